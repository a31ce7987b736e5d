"""Control characters and bidi overrides in text other people see are refused with a 422
in the error shape (issue 14, item 12): task titles and display names are single-line,
descriptions and bios keep LF and TAB but nothing else of the kind.

The real tasks and users apps, against SQLite and against PostgreSQL + Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.users.app import create_app as create_users_app
from services.users.settings import UsersSettings
from tests.services.conftest import running, service_env
from tests.support.error_shape import assert_error_shape
from tests.support.events import tasks_app
from tests.support.tokens import auth_header

TASKS = "/api/v1/tasks"
ME = "/api/v1/users/me"

#: Refused everywhere: terminal escapes, C1 controls, bidi embeddings, overrides, isolates.
ALWAYS_REFUSED = {
    "CR": "\r", "ESC": "\x1b", "NUL": "\x00", "BEL": "\x07", "DEL": "\x7f", "NEL": "\x85", "CSI": "\x9b",
    "LRE": "\u202a", "RLE": "\u202b", "PDF": "\u202c", "LRO": "\u202d", "RLO": "\u202e",
    "LRI": "\u2066", "RLI": "\u2067", "FSI": "\u2068", "PDI": "\u2069", "LINE SEPARATOR": "\u2028",
}
#: Refused in single-line text only.
LINE_BREAKS = {"LF": "\n", "TAB": "\t"}
#: Not control characters: right-to-left text with its marks, emoji with joiners, accents.
ACCEPTED = ["\u05e9\u05dc\u05d5\u05dd \u200fworld\u200e", "\U0001f469\u200d\U0001f4bb ship it", "cafe\u0301"]


@pytest.fixture
async def tasks(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(tasks_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)) as client:
        yield client


@pytest.fixture
async def users(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = UsersSettings(**service_env("USERS_", database_url=database_url, redis_url=redis_url,
                                           data_dir=tmp_path))
    async with running(create_users_app(settings)) as client:
        yield client


@pytest.fixture
def caller() -> dict[str, str]:
    user_id = str(uuid.uuid4())
    return auth_header(user_id, email=f"ctl-{user_id[:8]}@example.com")


def assert_refused(response: httpx.Response, field: str, char: str) -> None:
    body = assert_error_shape(response, 422, "validation_error")
    errors = body["details"]["errors"]
    assert [error["loc"] for error in errors] == [["body", field]], errors
    assert f"U+{ord(char):04X}" in errors[0]["msg"], errors
    assert char not in response.text


async def test_titles_refuse_control_and_bidi_characters(tasks: httpx.AsyncClient, caller: dict[str, str]) -> None:
    task = (await tasks.post(TASKS, json={"title": "Pay invoice"}, headers=caller)).json()
    for char in {**ALWAYS_REFUSED, **LINE_BREAKS}.values():
        title = f"Pay{char}invoice"
        assert_refused(await tasks.post(TASKS, json={"title": title}, headers=caller), "title", char)
        assert_refused(await tasks.patch(f"{TASKS}/{task['id']}", json={"title": title}, headers=caller),
                       "title", char)
    listing = (await tasks.get(TASKS, headers=caller)).json()
    assert [t["title"] for t in listing["data"]] == ["Pay invoice"]
    for title in ACCEPTED:
        created = await tasks.post(TASKS, json={"title": title}, headers=caller)
        assert created.status_code == 201, created.text
        assert created.json()["title"] == title


async def test_descriptions_keep_newlines_and_tabs_only(tasks: httpx.AsyncClient, caller: dict[str, str]) -> None:
    description = "Steps:\n\t1. reproduce\n\t2. fix\n"
    created = await tasks.post(TASKS, json={"title": "Bug", "description": description}, headers=caller)
    assert created.status_code == 201, created.text
    fetched = (await tasks.get(f"{TASKS}/{created.json()['id']}", headers=caller)).json()
    assert fetched["description"] == description
    for char in ALWAYS_REFUSED.values():
        response = await tasks.post(TASKS, json={"title": "Bug", "description": f"line{char}two"}, headers=caller)
        assert_refused(response, "description", char)


async def test_display_names_refuse_control_and_bidi_characters(users: httpx.AsyncClient,
                                                                caller: dict[str, str]) -> None:
    assert (await users.patch(ME, json={"display_name": "Alice"}, headers=caller)).status_code == 200
    for char in {**ALWAYS_REFUSED, **LINE_BREAKS}.values():
        response = await users.patch(ME, json={"display_name": f"Ali{char}ce"}, headers=caller)
        assert_refused(response, "display_name", char)
    for char in ALWAYS_REFUSED.values():  # a bio is multi-line text, like a description
        assert_refused(await users.patch(ME, json={"bio": f"bio{char}"}, headers=caller), "bio", char)
    assert (await users.get(ME, headers=caller)).json()["display_name"] == "Alice"
    for name in ACCEPTED:
        response = await users.patch(ME, json={"display_name": name, "bio": "Ships things.\n\tOften."},
                                     headers=caller)
        assert response.status_code == 200, response.text
        assert response.json()["display_name"] == name
