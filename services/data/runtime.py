"""What the data service runs beside its routes: the stream consumer (with Redis),
de-duplication housekeeping, and the objects routes share (``kit.runtime``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from services.data.consumer import StreamConsumer, consumer_redis
from services.data.progress import EventProgress
from services.data.projection import ApplyResult, forget_processed_before
from services.data.recommendations import Recommender
from services.data.settings import DataSettings
from services.kit import metric_names as names
from services.kit.app import Kit, Worker
from services.kit.loops import ServiceLoop

log = structlog.get_logger("flotilla.data")

#: How often event ids older than the retention are dropped.
PRUNE_INTERVAL_SECONDS = 3600.0
#: On shutdown, time for work in flight (a batch's transaction) to finish.
STOP_GRACE_SECONDS = 10.0


@dataclass
class DataRuntime:
    settings: DataSettings
    recommender: Recommender
    consumed: Counter
    progress: EventProgress

    def record(self, result: ApplyResult, invalid: int) -> None:
        self.consumed.labels(result="applied").inc(result.applied)
        self.consumed.labels(result="duplicate").inc(result.duplicates)
        self.consumed.labels(result="invalid").inc(invalid)


def _pruner(kit: Kit, days: int) -> Callable[[], Awaitable[bool]]:
    async def prune() -> bool:
        async with kit.database.session() as session, session.begin():
            dropped = await forget_processed_before(session, days=days)
        if dropped:
            log.info("processed_events_pruned", count=dropped)
        return False

    return prune


def data_runtime(settings: DataSettings) -> Worker:
    @asynccontextmanager
    async def worker(kit: Kit) -> AsyncIterator[None]:
        consumed = Counter(names.EVENTS_CONSUMED_TOTAL.removesuffix("_total"),
                           "Task events consumed, by result (applied, duplicate, invalid)", ["result"],
                           registry=kit.metrics.registry)
        for result in ("applied", "duplicate", "invalid"):
            consumed.labels(result=result)  # exported as 0 from the start
        progress = EventProgress(kit.metrics.registry, max_lag=settings.events_max_lag)

        async def describe_progress() -> dict[str, int | None]:
            return {"lag": progress.lag, "confirmed_seq": progress.confirmed}

        kit.health.add("events", progress.check, critical=False, describe=describe_progress)
        runtime = DataRuntime(settings=settings, recommender=Recommender(kit, settings), consumed=consumed,
                              progress=progress)
        kit.runtime = runtime
        if not settings.ingest_enabled:
            log.warning("event_ingest_disabled", reason="DATA_INTERNAL_TOKEN is unset")
        async with AsyncExitStack() as stack:
            pruner = ServiceLoop("processed-events-prune", _pruner(kit, settings.processed_events_retention_days),
                                 idle_seconds=PRUNE_INTERVAL_SECONDS, backoff_max_seconds=PRUNE_INTERVAL_SECONDS)
            await stack.enter_async_context(pruner.running(grace_seconds=STOP_GRACE_SECONDS))
            popular = ServiceLoop("popular-refresh", runtime.recommender.refresh_popular,
                                  idle_seconds=settings.popular_refresh_seconds,
                                  backoff_max_seconds=settings.popular_refresh_seconds)
            await stack.enter_async_context(popular.running(grace_seconds=STOP_GRACE_SECONDS))
            redis_url = settings.stream_redis_url
            if redis_url:
                redis = consumer_redis(redis_url, settings)
                stack.push_async_callback(redis.aclose)
                consumer = StreamConsumer(redis=redis, db=kit.database, settings=settings, on_batch=runtime.record,
                                          progress=progress)
                loop = ServiceLoop("event-consumer", consumer.step, idle_seconds=0,
                                   backoff_max_seconds=settings.consumer_backoff_max_seconds)
                # The grace covers one blocking read plus one batch's transaction.
                grace = settings.consumer_block_ms / 1000 + STOP_GRACE_SECONDS
                await stack.enter_async_context(loop.running(grace_seconds=grace))
                log.info("event_consumer_started", stream=consumer.stream, group=consumer.group,
                         consumer=consumer.name)
            yield

    return worker
