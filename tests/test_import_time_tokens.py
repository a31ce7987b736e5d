"""Guard: no test module mints a token or makes an account when it is imported.

A token minted at import starts its lifetime at collection time; when the suite reaches
the module minutes later it has expired (401 "token expired" on a slow machine, in a
random order, or in a long run). Accounts and logins made at import spend a shared
stack's budgets before any test runs. Make them in a fixture or inside the test.

What runs at import: module and class bodies, decorators and argument defaults.
Function and lambda bodies run later, when a test calls them, so they are fine.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Helpers that mint tokens or create/log in accounts (tests/support/tokens.py, auth.py, stack.py).
TOKEN_MAKERS = frozenset({"mint", "auth_header", "register", "login", "register_and_login"})


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


class _ImportTimeCalls(ast.NodeVisitor):
    """Collects calls to TOKEN_MAKERS that execute when the module is imported."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        if name in TOKEN_MAKERS:
            self.found.append((node.lineno, name))
        self.generic_visit(node)

    def _visit_definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Decorators and defaults are evaluated at definition time; the body is not.
        for expression in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
            if expression is not None:
                self.visit(expression)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_definition(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_definition(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expression in (*node.args.defaults, *node.args.kw_defaults):
            if expression is not None:
                self.visit(expression)


def import_time_token_calls(source: str) -> list[tuple[int, str]]:
    """(line, helper) for every token/account helper called while ``source`` is imported."""
    visitor = _ImportTimeCalls()
    visitor.visit(ast.parse(source))
    return visitor.found


def offenders_in(tests: Path) -> list[str]:
    return [
        f"{path.relative_to(tests.parent)}:{line}: {name}() runs at import"
        for path in sorted(tests.rglob("*.py"))
        for line, name in import_time_token_calls(path.read_text())
    ]


def test_no_test_module_mints_tokens_or_accounts_at_import() -> None:
    # The whole tree is parsed in a process of its own: CPython 3.11's ast.parse is not
    # safe while another thread of this process parses ("AST constructor recursion depth
    # mismatch"), and a long suite may have such a thread running.
    scan = (f"import json; from tests.test_import_time_tokens import offenders_in; from pathlib import Path; "
            f"print(json.dumps(offenders_in(Path({str(TESTS)!r}))))")
    result = subprocess.run([sys.executable, "-c", scan], cwd=TESTS.parent, capture_output=True, text=True,
                            timeout=120, check=True)
    offenders = json.loads(result.stdout)
    assert offenders == [], (
        "tokens/accounts made at import expire or spend shared budgets before the test runs; "
        "make them in a fixture or inside the test:\n  " + "\n  ".join(offenders)
    )


@pytest.mark.parametrize(("source", "expected"), [
    ('ALICE = auth_header("alice")', [(1, "auth_header")]),
    ("class T:\n    token = tokens.mint('bob')", [(2, "mint")]),
    ("@pytest.mark.parametrize('h', [auth_header('a')])\ndef test(h): ...", [(1, "auth_header")]),
    ("def test(h=mint('a')): ...", [(1, "mint")]),
    ("f = lambda t=login(c, 'e'): t", [(1, "login")]),
    ("async def test():\n    await register(client, 'e')\n    h = auth_header('a')", []),
    ("@pytest.fixture\ndef alice():\n    return auth_header('alice')", []),
    ("f = lambda: mint('a')", []),
])
def test_the_guard_tells_import_time_from_test_time(source: str, expected: list[tuple[int, str]]) -> None:
    assert import_time_token_calls(source) == expected
