"""Popular recommendations never reveal a private title or how many users have one
(issue 14, item 5).

Popular titles are other users' text: shown only once the privacy threshold (the default
``DATA_POPULAR_MIN_USERS``) of distinct users have the title, compared case- and
space-insensitively, counting only users whose first task is older than the default
``DATA_POPULAR_MIN_USER_AGE_SECONDS``; the count itself is never in the answer. The real
data app with its default privacy settings, events through its internal ingest.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.data.settings import DataSettings
from tests.services.conftest import running
from tests.support.data_client import ingest, popular_once
from tests.support.events import data_app, event

#: The defaults under test, read from the settings rather than repeated here.
K = DataSettings.model_fields["popular_min_users"].default
MIN_AGE = timedelta(seconds=DataSettings.model_fields["popular_min_user_age_seconds"].default)
#: A title that reaches the threshold in every test: once it is listed, the refresh has
#: seen everything ingested with it.
MARKER = "Team offsite"


@pytest.fixture
async def client(database_url: str, redis_url: str, tmp_path: Path):
    app = data_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path)
    async with running(app) as client:
        yield client


def users(count: int, name: str = "user") -> list[str]:
    return [f"{name}-{uuid.uuid4().hex[:10]}" for _ in range(count)]


def settled() -> datetime:
    """A first task long enough ago for its user to count."""
    return datetime.now(UTC) - MIN_AGE - timedelta(days=1)


def tasks(owners: list[str], title: str, *, when: datetime | None = None) -> list[dict[str, Any]]:
    return [event(owner, title=title, occurred_at=when or settled()) for owner in owners]


def titles(body: dict[str, Any]) -> list[str]:
    return [item["title"] for item in body["recommendations"]]


def listed(*wanted: str) -> Any:
    return lambda shown: set(wanted) <= set(shown)


def test_the_default_threshold_is_well_above_a_handful() -> None:
    assert K >= 20
    assert timedelta(days=1) <= MIN_AGE


async def test_a_title_below_the_threshold_is_never_shown_and_at_it_no_count_is(client: httpx.AsyncClient) -> None:
    secret = "Divorce lawyer appointment"
    sharers = users(K - 1)
    await ingest(client, *tasks(users(K), MARKER), *tasks(sharers, secret))

    newcomer = users(1, "newcomer")[0]
    below = await popular_once(client, newcomer, listed(MARKER))
    assert secret not in titles(below)

    # One more user has it: now K users share it, and it is shown, without a count.
    await ingest(client, *tasks(users(1), secret))
    at_k = await popular_once(client, newcomer, listed(secret))
    assert (at_k["source"], at_k["fallback"]) == ("popular", True)
    for item in at_k["recommendations"]:
        assert item == {"title": item["title"], "task_id": None, "priority": None}
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["Recommendation"]
    assert set(schema["properties"]) == {"title", "task_id", "priority"}


async def test_fresh_accounts_cannot_plant_a_title_or_confirm_a_guess(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    spam = "FREE CREDITS at evil.example"
    guess = "Visit Dr. Jones re: diagnosis"
    await ingest(
        client,
        *tasks(users(K), MARKER),
        # Spam planted by many new accounts: none of them counts yet.
        *tasks(users(3 * K, "planter"), spam, when=now),
        # A guessed private title: one victim, the rest fresh accounts the attacker made.
        *tasks(users(1, "victim"), guess), *tasks(users(3 * K, "prober"), guess, when=now),
    )
    shown = titles(await popular_once(client, users(1, "newcomer")[0], listed(MARKER)))
    assert spam not in shown
    assert guess not in shown


async def test_case_and_space_variants_count_as_one_title(client: httpx.AsyncClient) -> None:
    spellings = ["Buy milk", "buy milk", "BUY  MILK", " Buy\tmilk ", "\uff22uy milk"]  # the last: fullwidth B
    owners = users(K)
    # Most of them write "Buy milk"; each other spelling is someone's own.
    variants = spellings + ["Buy milk"] * (K - len(spellings))
    await ingest(client, *(event(owner, title=title, occurred_at=settled())
                           for owner, title in zip(owners, variants, strict=True)),
                 # One user with two spellings of another title counts once.
                 *tasks(users(K - 2), "Call mom"), *tasks(["twice-user"] * 2, "Call mom"),
                 event("twice-user", title="call  MOM", occurred_at=settled()))
    shown = titles(await popular_once(client, users(1, "newcomer")[0], listed("Buy milk")))
    assert shown.count("Buy milk") == 1
    assert not [title for title in shown if title != "Buy milk" and "milk" in title.casefold()]
    assert not [title for title in shown if "mom" in title.casefold()]
