"""A batch of task events applied at once ends exactly where applying them one by one does.

The consumer applies each batch in a few statements (one insert of event ids, one upsert
per round of distinct tasks); these tests pin that to the one-at-a-time semantics:
redeliveries, several events of one task in one batch, out-of-order events, deletes.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, select

from services.data.models import ProcessedEvent, TaskSnapshot
from services.data.projection import apply_events
from services.kit.events import TaskEvent
from tests.services.conftest import running
from tests.support.events import data_app, event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def shuffled_history(rng: random.Random) -> list[TaskEvent]:
    """Events of a few tasks, some redelivered, some out of order, some deleted."""
    owner = f"owner-{uuid.uuid4().hex[:6]}"
    events: list[dict[str, Any]] = []
    for _ in range(6):
        task_id = uuid.uuid4()
        kinds = ["task.created"] + ["task.updated"] * rng.randrange(4) + (["task.deleted"] if rng.random() < .4 else [])
        for step, kind in enumerate(kinds):
            events.append(event(owner, type=kind, task_id=task_id, title=f"v{step}",
                                status=rng.choice(["todo", "in_progress", "done"]),
                                occurred_at=T0 + timedelta(seconds=step)))
    events += rng.sample(events, 5)  # redeliveries
    rng.shuffle(events)
    return [TaskEvent.model_validate(e) for e in events]


async def snapshots(app: FastAPI) -> list[tuple[Any, ...]]:
    async with app.state.kit.database.session() as session:
        rows = await session.execute(select(TaskSnapshot.task_id, TaskSnapshot.title, TaskSnapshot.status,
                                            TaskSnapshot.deleted, TaskSnapshot.version_at))
        return sorted(tuple(row) for row in rows)


async def test_batch_equals_one_at_a_time(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)  # a fixed history: the same case on every run
    histories = [shuffled_history(rng) for _ in range(3)]
    one_by_one = data_app(database_url=database_url, data_dir=tmp_path / "a")
    async with running(one_by_one):
        totals = []
        for history in histories:
            applied = duplicates = 0
            for item in history:
                async with one_by_one.state.kit.database.session() as session, session.begin():
                    result = await apply_events(session, [item])
                applied, duplicates = applied + result.applied, duplicates + result.duplicates
            totals.append((applied, duplicates))
        expected = await snapshots(one_by_one)
        # Clear the tables, then the same histories as one batch each.
        async with one_by_one.state.kit.database.session() as session, session.begin():
            for table in (TaskSnapshot, ProcessedEvent):
                await session.execute(delete(table))
        for history, (applied, duplicates) in zip(histories, totals, strict=True):
            async with one_by_one.state.kit.database.session() as session, session.begin():
                result = await apply_events(session, history)
            assert (result.applied, result.duplicates) == (applied, duplicates)
        assert await snapshots(one_by_one) == expected
    assert any(row[3] for row in expected)  # the case includes deletes
