"""How far the data service has got with the producer's events: its confirmed sequence
(everything up to it committed here), the highest sequence it has seen, and the
producer's head (from the relay's key); the lag and gap metrics and the health check."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.data.projection import ApplyResult
from services.kit import metric_names as names

log = structlog.get_logger("flotilla.data.events")


class LagTooHigh(Exception):
    """The "events" health check: the consumer is far behind the producer."""


class EventProgress:
    def __init__(self, registry: CollectorRegistry, *, max_lag: int) -> None:
        self.max_lag = max_lag
        #: None until known (read from the database, or after the first committed batch).
        self.confirmed: int | None = None
        self.highest_seen = 0
        self.head = 0
        self.in_gap = False
        self.lag_gauge = Gauge(names.EVENTS_CONSUMER_LAG,
                               "Events published or seen beyond the consumer's confirmed sequence",
                               registry=registry)
        self.gaps = Counter(names.EVENTS_GAPS_DETECTED_TOTAL.removesuffix("_total"),
                            "Times events were committed past a missing one (a gap opened)", registry=registry)

    @property
    def lag(self) -> int:
        if self.confirmed is None:
            return 0
        return max(0, max(self.head, self.highest_seen) - self.confirmed)

    def _refresh(self) -> None:
        self.lag_gauge.set(self.lag)

    def saw(self, seqs: Iterable[int | None]) -> None:
        """Events read (committed or not yet): the lag counts them until confirmed."""
        self.highest_seen = max([self.highest_seen, *(seq for seq in seqs if seq is not None)])
        self._refresh()

    def committed(self, result: ApplyResult) -> None:
        if result.confirmed_seq is None:
            return
        self.confirmed = max(self.confirmed or 0, result.confirmed_seq)
        if result.gap and not self.in_gap:
            self.gaps.inc()
            log.warning("event_sequence_gap", confirmed=self.confirmed, committed_up_to=result.highest_seq)
        self.in_gap = result.gap
        self._refresh()

    def known(self, *, confirmed: int | None = None, head: int | None = None) -> None:
        """Values read from the database (confirmed) or Redis (the producer's head)."""
        if confirmed is not None:
            self.confirmed = max(self.confirmed or 0, confirmed)
        if head is not None:
            self.head = max(self.head, head)
        self._refresh()

    async def check(self) -> None:
        if self.lag > self.max_lag:
            raise LagTooHigh(f"{self.lag} events beyond the confirmed sequence")
