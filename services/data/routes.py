"""HTTP API of the data service: /api/v1/stats, /api/v1/recommendations, and the
internal event ingest (embedded mode; not in the OpenAPI document, never routed by
the gateway)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path

from services.data import queries
from services.data.projection import apply_events, log_committed, parse_events
from services.data.runtime import DataRuntime
from services.data.schemas import IngestResult, RecommendationsPublic, StatsPublic
from services.kit.deps import CurrentUserId, KitDep, SessionDep
from services.kit.errors import Forbidden, NotFound, Unauthorized
from services.kit.events import INGEST_PATH, INTERNAL_TOKEN_HEADER, TaskEventBatch
from services.kit.openapi import raises


async def get_runtime(kit: KitDep) -> DataRuntime:  # async: no thread-pool hop
    return kit.runtime_as(DataRuntime)


RuntimeDep = Annotated[DataRuntime, Depends(get_runtime)]

stats_router = APIRouter(prefix="/api/v1/stats", tags=["stats"])
recommendations_router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])
internal_router = APIRouter(include_in_schema=False)


@stats_router.get("/me", response_model=StatsPublic, summary="Task statistics of the caller")
async def my_stats(user_id: CurrentUserId, session: SessionDep) -> StatsPublic:
    return await queries.user_stats(session=session, user_id=user_id)


@recommendations_router.get(
    "/{user_id}", response_model=RecommendationsPublic,
    summary="Recommendations for the caller: personalised, else popular, else an empty fallback",
)
@raises(403)
async def recommendations(
    user_id: Annotated[str, Path(max_length=64)], caller: CurrentUserId, runtime: RuntimeDep
) -> RecommendationsPublic:
    if user_id != caller:
        raise Forbidden("you can only read your own recommendations")
    return await runtime.recommender.recommend(caller)


async def require_internal_token(
    runtime: RuntimeDep,
    token: Annotated[str | None, Header(alias=INTERNAL_TOKEN_HEADER)] = None,
) -> None:
    if not runtime.settings.ingest_enabled:
        raise NotFound("not found")
    expected = runtime.settings.internal_token.get_secret_value()
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("missing or invalid internal token", headers={})


# confirmed_seq is left out of the answer for batches without numbered events.
@internal_router.post(INGEST_PATH, response_model=IngestResult, response_model_exclude_none=True,
                      dependencies=[Depends(require_internal_token)])
async def ingest_events(batch: TaskEventBatch, session: SessionDep, runtime: RuntimeDep) -> IngestResult:
    """Apply a batch from the tasks relay when there is no Redis Stream between them."""
    events, invalid = parse_events(batch.events)
    runtime.progress.saw(event.seq for event in events)
    async with session.begin():
        result = await apply_events(session, events)
    runtime.progress.committed(result)
    log_committed(events, "http")
    runtime.record(result, invalid)
    return IngestResult(applied=result.applied, duplicates=result.duplicates, invalid=invalid,
                        confirmed_seq=result.confirmed_seq)
