"""Bounded client load for the chaos tests: worker threads, a tally, and a readiness-aware
client-side balancer (what a Kubernetes endpoints controller plus kube-proxy do).

Threads rather than asyncio: each worker is a plain blocking client, as independent
from the others as separate users, and nothing here shares the test's event loop.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.support.error_shape import ERROR_FIELDS

#: Hard cap per worker, whatever the scenario's stop condition says (every loop is bounded).
MAX_REQUESTS_PER_WORKER = 20_000


@dataclass
class Tally:
    """What the clients saw. ``failures`` holds a description of each failed request."""

    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, kind: str) -> None:
        with self.lock:
            self.sent += 1
            self.outcomes[kind] += 1

    def fail(self, description: str) -> None:
        with self.lock:
            self.sent += 1
            self.outcomes["failed"] += 1
            self.failures.append(description)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        outcomes = " ".join(f"{kind}={count}" for kind, count in sorted(self.outcomes.items()))
        return f"sent={self.sent} failed={self.failed} {outcomes}"


def is_error_shape(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == ERROR_FIELDS


def is_clean_unavailable(response: httpx.Response) -> bool:
    """503 with Retry-After, in the one error shape: the only acceptable way to fail."""
    return response.status_code == 503 and "retry-after" in response.headers and is_error_shape(response)


Operation = Callable[[httpx.Client, int, int], None]


class Load:
    """``workers`` threads, each calling ``operation(client, worker, n)`` in a loop until
    ``stop()`` (or MAX_REQUESTS_PER_WORKER). The operation records into a Tally itself."""

    def __init__(self, operation: Operation, *, workers: int, base_url: str = "", timeout: float = 10.0) -> None:
        self.operation = operation
        self.workers = workers
        self.base_url = base_url
        self.timeout = timeout
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _run(self, worker: int) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
                for n in range(MAX_REQUESTS_PER_WORKER):
                    if self._stop.is_set():
                        return
                    self.operation(client, worker, n)
        except BaseException as exc:  # surfaced by stop(): a broken worker must fail the test
            self.errors.append(exc)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load workers still running after {timeout}s: {alive}"
        if self.errors:
            raise self.errors[0]

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ReadinessBalancer:
    """Round-robin over the instances whose /health/ready last answered 200.

    One thread polls every instance every ``interval`` seconds, like the endpoints
    controller following readiness probes; an instance that answers 503 or stops
    answering is taken out of rotation before the next request picks it.
    """

    def __init__(self, urls: list[str], *, interval: float = 0.02) -> None:
        self.urls = list(urls)
        self.interval = interval
        self.ready: dict[str, bool] = dict.fromkeys(self.urls, False)
        #: Per instance, the readiness answers in order, collapsed ("200", "503", "down").
        self.history: dict[str, list[str]] = {url: [] for url in self.urls}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._thread = threading.Thread(target=self._poll, name="readiness-poller", daemon=True)

    def add(self, url: str) -> None:
        with self._lock:
            self.urls.append(url)
            self.ready[url] = False
            self.history[url] = []

    def _observe(self, client: httpx.Client, url: str) -> None:
        try:
            state = str(client.get(f"{url}/health/ready").status_code)
        except httpx.HTTPError:
            state = "down"
        with self._lock:
            self.ready[url] = state == "200"
            if not self.history[url] or self.history[url][-1] != state:
                self.history[url].append(state)

    def _poll(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self._stop.is_set():
                with self._lock:
                    urls = list(self.urls)
                for url in urls:
                    self._observe(client, url)
                self._stop.wait(self.interval)

    def pick(self) -> str | None:
        """The next ready instance, or None when no instance is in rotation."""
        with self._lock:
            ready = [u for u in self.urls if self.ready[u]]
        return ready[next(self._counter) % len(ready)] if ready else None

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.get(url):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not in rotation after {timeout}s: {self.history[url]}")
            time.sleep(0.01)

    def __enter__(self) -> ReadinessBalancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
