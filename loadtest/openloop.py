"""An open-loop load generator over many keep-alive connections (what wrk2 would do).

Two phases, both bounded:

1. **establish**: open ``connections`` TCP connections at ``open_rate`` per second and
   verify each with one request (at most ``verify_concurrency`` verifications in flight,
   so the verification itself is a closed loop that cannot overload the target);
2. **window**: send ``rate`` requests per second for ``seconds``, on a fixed schedule that
   does not wait for answers (open loop), each on the connection idle longest (FIFO, so
   the load spreads over every connection). Latency is measured from the **scheduled**
   send time, so time spent queueing, in the generator or in the server, shows up
   instead of being omitted (no coordinated omission). A failed request counts in the
   percentiles with the time it took to fail (a timeout as the full timeout).

Requests are prebuilt bytes (``rawhttp``), one per connection's user; the generator's own
CPU time over the window is measured (``time.process_time``) and reported apart.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.rawhttp import Connection, ErrorKind, RequestFailed

#: Headers the report counts (the tasks service says whether its cache answered).
COUNTED_HEADERS = frozenset({"x-cache"})


def raise_nofile() -> int:
    """Raise this process's soft open-files limit to the hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def percentile(sorted_values: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


@dataclass
class Plan:
    host: str
    port: int
    #: Prebuilt requests; connection ``i`` sends ``requests[i % len(requests)]`` (one per user).
    requests: list[bytes]
    connections: int
    rate: float
    seconds: float
    open_rate: float = 1000.0
    verify_concurrency: int = 64
    timeout: float = 10.0


@dataclass
class Outcome:
    connections: int
    established: int = 0
    #: Connections that could not be opened or failed their verification request, by kind.
    failed: Counter[str] = field(default_factory=Counter)
    establish_seconds: float = 0.0
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    #: Failed requests of the window by kind: connect/write/read error, timeout, "status <code>".
    errors: Counter[str] = field(default_factory=Counter)
    #: Connections found closed by the server when their turn came, and opened again.
    reconnects: int = 0
    window_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    #: How late each send left after its scheduled time (waiting for the generator or an idle connection).
    send_lag_ms: list[float] = field(default_factory=list)
    x_cache: Counter[str] = field(default_factory=Counter)
    generator_cpu_seconds: float = 0.0

    @property
    def answered(self) -> int:
        """Requests that got an HTTP response (any status): what the servers' CPU is divided by."""
        return self.ok + sum(n for kind, n in self.errors.items() if kind.startswith("status "))

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def latency(self) -> dict[str, float | None]:
        values = sorted(self.latencies_ms)
        lags = sorted(self.send_lag_ms)
        return {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
                "p99_ms": percentile(values, 99), "max_ms": values[-1] if values else None,
                "send_lag_p99_ms": percentile(lags, 99), "send_lag_max_ms": lags[-1] if lags else None}


@dataclass
class _Slot:
    conn: Connection
    raw: bytes


class OpenLoop:
    """Runs a ``Plan``; ``on_window_start``/``on_window_end`` bracket the measured window
    (CPU meters), the end one called while every connection is still open."""

    def __init__(self, plan: Plan, *, on_window_start: Callable[[], object] = lambda: None,
                 on_window_end: Callable[[], object] = lambda: None) -> None:
        self.plan = plan
        self.on_window_start = on_window_start
        self.on_window_end = on_window_end
        self.outcome = Outcome(plan.connections)
        self._slots: list[_Slot] = []

    async def run(self) -> Outcome:
        try:
            await self._establish()
            if self._slots:
                await self._window()
        finally:
            for slot in self._slots:
                slot.conn.close()
        return self.outcome

    # --- phase 1 --------------------------------------------------------------------

    async def _establish(self) -> None:
        plan, loop = self.plan, asyncio.get_running_loop()
        verifying = asyncio.Semaphore(plan.verify_concurrency)
        started = loop.time()
        tasks = []
        for i in range(plan.connections):
            delay = started + i / plan.open_rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(self._open_one(plan.requests[i % len(plan.requests)], verifying)))
        await asyncio.gather(*tasks)
        self.outcome.establish_seconds = loop.time() - started

    async def _open_one(self, raw: bytes, verifying: asyncio.Semaphore) -> None:
        conn = Connection(self.plan.host, self.plan.port, wanted=COUNTED_HEADERS)
        try:
            async with asyncio.timeout(self.plan.timeout):
                await conn.connect()
            async with verifying, asyncio.timeout(self.plan.timeout):
                response = await conn.request(raw)
        except RequestFailed as exc:
            self.outcome.failed[str(exc.kind)] += 1
            conn.close()
            return
        except TimeoutError:
            self.outcome.failed[str(ErrorKind.TIMEOUT)] += 1
            conn.close()
            return
        if not 200 <= response.status < 300:
            self.outcome.failed[f"status {response.status}"] += 1
            conn.close()
            return
        self.outcome.established += 1
        self._slots.append(_Slot(conn, raw))

    # --- phase 2 --------------------------------------------------------------------

    async def _window(self) -> None:
        plan, out, loop = self.plan, self.outcome, asyncio.get_running_loop()
        idle: deque[_Slot] = deque(self._slots)
        waiters: deque[asyncio.Future[None]] = deque()
        inflight: set[asyncio.Task[None]] = set()
        total = int(plan.rate * plan.seconds)
        out.scheduled = total

        async def one(at: float) -> None:
            while not idle:  # every connection busy: wait for one (the wait counts as latency)
                waiter = loop.create_future()
                waiters.append(waiter)
                await waiter
            slot = idle.popleft()
            now = loop.time()
            out.send_lag_ms.append(1000 * (now - at))
            out.sent += 1
            try:
                async with asyncio.timeout(plan.timeout):
                    if not slot.conn.open:
                        out.reconnects += 1
                        slot.conn.close()
                        await slot.conn.connect()
                    response = await slot.conn.request(slot.raw)
            except RequestFailed as exc:
                out.errors[str(exc.kind)] += 1
            except TimeoutError:
                slot.conn.close()
                out.errors[str(ErrorKind.TIMEOUT)] += 1
            else:
                if 200 <= response.status < 300:
                    out.ok += 1
                else:
                    out.errors[f"status {response.status}"] += 1
                if (cache := response.headers.get("x-cache")) is not None:
                    out.x_cache[cache] += 1
            finally:
                idle.append(slot)
                while waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        break
            out.latencies_ms.append(1000 * (loop.time() - at))

        self.on_window_start()
        cpu_before = time.process_time()
        started = loop.time() + 0.01
        for i in range(total):
            at = started + i / plan.rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(at))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            # Every request is bounded by the timeout once sent; the wait for a connection is
            # bounded by the others' timeouts. Whatever is left after that is cancelled.
            _, pending = await asyncio.wait(set(inflight), timeout=2 * plan.timeout + 5)
            for task in pending:
                task.cancel()
                out.errors[str(ErrorKind.TIMEOUT)] += 1
        out.window_seconds = loop.time() - started
        out.generator_cpu_seconds = time.process_time() - cpu_before
        self.on_window_end()


def run_open_loop(plan: Plan, *, on_window_start: Callable[[], object] = lambda: None,
                  on_window_end: Callable[[], object] = lambda: None) -> Outcome:
    """Run the plan on a uvloop event loop (the cheapest one at hand) in this process."""
    import uvloop

    raise_nofile()
    runner = OpenLoop(plan, on_window_start=on_window_start, on_window_end=on_window_end)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
        return loop_runner.run(runner.run())
