"""Handing users' access tokens to wrk (a private file), and reading a token's subject."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def subject(token: str) -> str:
    """The ``sub`` claim of a JWT (the user id), read without verifying: our own tokens."""
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


@contextmanager
def tokens_file(tokens: Sequence[str], *, with_subject: bool = False) -> Iterator[Path]:
    """A temporary file of one token per line (``"<token> <user id>"`` with ``with_subject``)."""
    with tempfile.NamedTemporaryFile("w", prefix="flotilla-bench-tokens-", suffix=".txt") as handle:
        handle.write("".join(f"{t} {subject(t)}\n" if with_subject else f"{t}\n" for t in tokens))
        handle.flush()
        yield Path(handle.name)
