"""Recommendations with graceful degradation: personalised -> popular -> empty.

Each step runs under its own circuit breaker and time budget; a step that fails,
times out or has an open breaker just hands over to the next one, so the endpoint
answers 200 whatever is down, and says which source answered.

Popular titles are an aggregate over every live task (a GROUP BY over the whole
snapshot table: seconds at a million rows). No request ever runs it: a background
refresh recomputes it every ``popular_refresh_seconds`` into the shared cache, and of
many replicas only one per interval does (``Cache.claim``), so the cost per request is
one cache read whatever the data size.

Popular titles are other users' text, so they are private until many people share them:
a title is shown only when ``popular_min_users`` distinct users (k-anonymity, 25 by
default) have it, compared case- and whitespace-insensitively, counting only users
whose first task is older than ``popular_min_user_age_seconds`` (a week by default),
and the number of users is never shown. Planting a title, or confirming a guessed
private one, takes that many accounts that have been around for that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from prometheus_client import Counter
from pydantic import TypeAdapter

from services.data import queries
from services.data.schemas import Recommendation, RecommendationsPublic
from services.data.settings import DataSettings
from services.kit import metric_names as names
from services.kit.app import Kit
from services.kit.cache import Cache
from services.kit.db import utcnow

log = structlog.get_logger("flotilla.data.recommendations")

_ITEMS = TypeAdapter(list[Recommendation])
Step = Callable[[str], Awaitable[list[Recommendation]]]


class Recommender:
    def __init__(self, kit: Kit, settings: DataSettings) -> None:
        self.kit = kit
        self.timeout = settings.recommendations_timeout_seconds
        self.limit = settings.recommendations_limit
        self.min_users = settings.popular_min_users
        self.min_user_age = timedelta(seconds=settings.popular_min_user_age_seconds)
        # Same backend as the kit's cache, shorter TTL: popular titles are shared by
        # everyone and may lag a minute; nothing invalidates them.
        self.popular_cache = Cache(kit.cache.backend, prefix=kit.cache.prefix, ttl=settings.popular_cache_ttl_seconds,
                                   metrics=kit.metrics, name="popular")
        self.refresh_seconds = settings.popular_refresh_seconds
        # Replicas configured differently never share a list.
        self._popular_key = f"{self.limit}:{self.min_users}:{settings.popular_min_user_age_seconds:g}"
        self.served = Counter(names.RECOMMENDATIONS_TOTAL.removesuffix("_total"),
                              "Recommendation responses by source (personalised, popular, none)", ["source"],
                              registry=kit.metrics.registry)
        for source in ("personalised", "popular", "none"):
            self.served.labels(source=source)  # exported as 0 from the start

    async def recommend(self, user_id: str) -> RecommendationsPublic:
        steps: tuple[tuple[str, Step], ...] = (("personalised", self._personalised), ("popular", self._popular))
        for source, step in steps:
            items = await self._guarded(source, step, user_id)
            if items:
                self.served.labels(source=source).inc()
                return RecommendationsPublic(user_id=user_id, source=source,
                                             fallback=source != "personalised", recommendations=items)
        self.served.labels(source="none").inc()
        return RecommendationsPublic(user_id=user_id, source="none", fallback=True, recommendations=[])

    async def _guarded(self, source: str, step: Step, user_id: str) -> list[Recommendation]:
        try:
            async with self.kit.breakers.guard(f"recommendations.{source}"), asyncio.timeout(self.timeout):
                return await step(user_id)
        except Exception as exc:  # any failure of a step means "try the next one", never a 500
            log.warning("recommendations_step_failed", step=source, error_type=type(exc).__name__)
            return []

    async def _personalised(self, user_id: str) -> list[Recommendation]:
        async with self.kit.database.session() as session:
            return await queries.open_tasks(session=session, user_id=user_id, limit=self.limit)

    async def _popular(self, _user_id: str) -> list[Recommendation]:
        cached, _ = await self.popular_cache.lookup("popular", self._popular_key)
        return _ITEMS.validate_json(cached) if cached is not None else []

    async def refresh_popular(self) -> bool:
        """Recompute popular titles into the shared cache, if no replica did this interval.

        A ``ServiceLoop`` step: returns False (nothing more waiting until the next interval).
        """
        if not await self.popular_cache.claim(f"popular:{self._popular_key}", ttl=self.refresh_seconds * 0.9):
            return False
        _, slot = await self.popular_cache.lookup("popular", self._popular_key)
        users_since = utcnow() - self.min_user_age if self.min_user_age else None
        async with self.kit.database.session() as session:
            items = await queries.popular_titles(session=session, limit=self.limit, min_users=self.min_users,
                                                 users_since=users_since)
        await self.popular_cache.store(slot, _ITEMS.dump_json(items))
        return False
