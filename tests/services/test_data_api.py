"""Data service API: stats, the internal ingest, recommendations and their fallbacks.

Events arrive through the internal ingest (the embedded-mode path), against SQLite and
against PostgreSQL + Redis.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.kit.events import INGEST_PATH, INTERNAL_TOKEN_HEADER
from tests.services.conftest import running
from tests.support.data_client import ingest, popular_once, recommendations
from tests.support.error_shape import assert_error_shape
from tests.support.events import data_app, event
from tests.support.tokens import auth_header

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def client(database_url: str, redis_url: str, tmp_path: Path):
    app = data_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path, popular_min_users=2,
                   events_stream=f"flotilla:events:test-{uuid.uuid4().hex[:8]}")
    async with running(app) as client:
        yield client


@pytest.fixture
def alice() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


async def stats(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.get("/api/v1/stats/me", headers=auth_header(user))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_stats_follow_created_updated_and_deleted_tasks(client: httpx.AsyncClient, alice: str) -> None:
    empty = await stats(client, alice)
    assert empty == {"user_id": alice, "created": 0, "open": 0, "done": 0, "deleted": 0,
                     "by_priority": {"low": 0, "medium": 0, "high": 0},
                     "by_status": {"todo": 0, "in_progress": 0, "done": 0}}
    one, two, three = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    result = await ingest(
        client,
        event(alice, task_id=one, priority="high", occurred_at=at(1)),
        event(alice, task_id=two, priority="low", occurred_at=at(2)),
        event(alice, task_id=three, occurred_at=at(3)),
        event(alice, type="task.updated", task_id=one, priority="high", status="done", occurred_at=at(4)),
        event(alice, type="task.updated", task_id=two, priority="medium", status="in_progress", occurred_at=at(5)),
        event(alice, type="task.deleted", task_id=three, occurred_at=at(6)),
        event("someone-else", occurred_at=at(7)),
    )
    assert result == {"applied": 7, "duplicates": 0, "invalid": 0}
    assert await stats(client, alice) == {
        "user_id": alice, "created": 3, "open": 1, "done": 1, "deleted": 1,
        "by_priority": {"low": 0, "medium": 1, "high": 1},
        "by_status": {"todo": 0, "in_progress": 1, "done": 1},
    }


async def test_redelivered_and_out_of_order_events_count_once(client: httpx.AsyncClient, alice: str) -> None:
    task = uuid.uuid4()
    created = event(alice, task_id=task, occurred_at=at(1))
    done = event(alice, type="task.updated", task_id=task, status="done", occurred_at=at(2))
    # The newer update first, then the creation, then both again (a redelivery).
    assert await ingest(client, done, created) == {"applied": 2, "duplicates": 0, "invalid": 0}
    assert await ingest(client, created, done) == {"applied": 0, "duplicates": 2, "invalid": 0}
    after = await stats(client, alice)
    assert (after["created"], after["done"], after["open"]) == (1, 1, 0)

    # A late update older than the delete does not bring the task back.
    deleted = event(alice, type="task.deleted", task_id=task, status="done", occurred_at=at(5))
    late = event(alice, type="task.updated", task_id=task, status="todo", occurred_at=at(3))
    await ingest(client, deleted, late)
    final = await stats(client, alice)
    assert (final["created"], final["deleted"], final["open"], final["done"]) == (1, 1, 0, 0)


async def test_malformed_events_are_skipped_not_blocking(client: httpx.AsyncClient, alice: str) -> None:
    bad = {**event(alice), "priority": "urgent"}
    result = await ingest(client, bad, {"nonsense": True}, event(alice))
    assert result == {"applied": 1, "duplicates": 0, "invalid": 2}
    assert (await stats(client, alice))["created"] == 1


async def test_ingest_needs_the_internal_token_and_is_not_public(client: httpx.AsyncClient, alice: str) -> None:
    body = {"events": [event(alice)]}
    assert_error_shape(await client.post(INGEST_PATH, json=body), 401, "unauthorized")
    assert_error_shape(await client.post(INGEST_PATH, json=body, headers={INTERNAL_TOKEN_HEADER: "guess"}),
                       401, "unauthorized")
    # A user's bearer token is not the internal token.
    assert_error_shape(await client.post(INGEST_PATH, json=body, headers=auth_header(alice)), 401, "unauthorized")
    assert (await stats(client, alice))["created"] == 0
    schema = (await client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/internal")]
    assert {"/api/v1/stats/me", "/api/v1/recommendations/{user_id}"} <= set(schema["paths"])


async def test_stats_need_a_token(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/api/v1/stats/me"), 401, "unauthorized")
    assert_error_shape(await client.get("/api/v1/recommendations/x"), 401, "unauthorized")


async def test_without_any_data_recommendations_are_the_empty_fallback(client: httpx.AsyncClient,
                                                                        alice: str) -> None:
    assert await recommendations(client, alice) == {
        "user_id": alice, "source": "none", "fallback": True, "recommendations": []}


async def test_recommendations_personalised_else_popular(client: httpx.AsyncClient, alice: str) -> None:
    newcomer, bob, carol = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("newcomer", "bob", "carol"))
    low, high, done, medium = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await ingest(
        client,
        event(alice, task_id=low, title="Water plants", priority="low", occurred_at=at(1)),
        event(alice, task_id=medium, title="Write tests", priority="medium", occurred_at=at(2)),
        event(alice, task_id=high, title="Fix prod", priority="high", occurred_at=at(3)),
        event(alice, task_id=done, title="Old", priority="high", status="done", occurred_at=at(4)),
        event(bob, title="Write tests", occurred_at=at(5)),
        event(carol, title="Secret plan", occurred_at=at(6)),
    )
    mine = await recommendations(client, alice)
    assert (mine["source"], mine["fallback"]) == ("personalised", False)
    assert [(r["title"], r["priority"]) for r in mine["recommendations"]] == [
        ("Fix prod", "high"), ("Write tests", "medium"), ("Water plants", "low")]
    assert mine["recommendations"][0]["task_id"] == str(high)

    # No open tasks of their own: titles shared by at least two users (this app's
    # threshold), never one user's, and not how many (as soon as the background refresh
    # has seen the events, which are long past the minimum user age).
    popular = await popular_once(client, newcomer)
    assert (popular["source"], popular["fallback"]) == ("popular", True)
    assert popular["recommendations"] == [{"title": "Write tests", "task_id": None, "priority": None}]


async def test_recommendations_of_someone_else_are_forbidden(client: httpx.AsyncClient, alice: str) -> None:
    await ingest(client, event("bob", title="Bob's secret"))
    response = await client.get("/api/v1/recommendations/bob", headers=auth_header(alice))
    assert_error_shape(response, 403, "forbidden")
    assert "Bob's secret" not in response.text


async def test_every_step_failing_gives_the_empty_fallback_not_an_error(
    database_url: str, redis_url: str, tmp_path: Path, alice: str
) -> None:
    # A time budget no query can meet: both steps fail on their timeout.
    app = data_app(database_url=database_url, redis_url=redis_url, data_dir=tmp_path, popular_min_users=1,
                   recommendations_timeout_seconds=1e-9)
    async with running(app) as client:
        await ingest(client, event(alice, title="Something"))
        for _ in range(7):  # enough failures to open both breakers on the way
            body = await recommendations(client, alice)
            assert body == {"user_id": alice, "source": "none", "fallback": True, "recommendations": []}
        metrics = (await client.get("/metrics")).text
        assert 'flotilla_recommendations_total{source="none"} 7.0' in metrics
        assert 'flotilla_circuit_breaker_state{upstream="recommendations.personalised"} 2.0' in metrics
