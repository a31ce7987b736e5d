"""Calls on an in-process data app's client: ingest events, read recommendations, wait
for the background refresh to publish popular titles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.kit.events import INGEST_PATH, INTERNAL_TOKEN_HEADER
from tests.support.events import INTERNAL_TOKEN
from tests.support.polling import eventually
from tests.support.tokens import auth_header


async def ingest(client: httpx.AsyncClient, *events: dict[str, Any]) -> dict[str, int]:
    """Post ``events`` to the internal ingest; its counts (applied, duplicates, invalid)."""
    response = await client.post(INGEST_PATH, json={"events": list(events)},
                                 headers={INTERNAL_TOKEN_HEADER: INTERNAL_TOKEN})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def recommendations(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    """The recommendations ``user`` reads about themself."""
    response = await client.get(f"/api/v1/recommendations/{user}", headers=auth_header(user))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def popular_once(client: httpx.AsyncClient, user: str,
                       until: Callable[[list[str]], bool] = bool) -> dict[str, Any]:
    """``user``'s recommendations once they are popular titles for which ``until(titles)``
    holds (default: any). ``user`` must have no open task of their own. The refresh runs
    in the background, so this waits for it; titles ingested before one that ``until``
    waits for have been seen by then too."""
    async def check() -> dict[str, Any] | None:
        body = await recommendations(client, user)
        titles = [item["title"] for item in body["recommendations"]]
        return body if body["source"] == "popular" and until(titles) else None

    return await eventually(check, message="popular titles refreshed")
