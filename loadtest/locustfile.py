"""The reference workload: users log in through the gateway, then list and create tasks.

Each simulated user registers its own account and logs in once (``on_start``), then
lists its tasks (weight 3) and creates a high-priority task (weight 1), thinking
0.1-0.5 s between requests. Runs against any base URL: ``--host`` of a local stack or a
cluster's gateway. Any non-2xx answer counts as a failure.

Environment knobs (so the same file serves the runner, the smoke test and ad-hoc runs):

- ``FLOTILLA_LOADTEST_RECOMMENDATIONS=1`` adds ``GET /api/v1/recommendations/{user_id}``
  (weight 1) to every user's task set.
- ``FLOTILLA_LOADTEST_TOKEN=<jwt>`` skips registration and login and sends this token
  (one shared account; for stacks where self-registration is closed).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

from locust import FastHttpUser, between, task

# Names group requests in the table: one row per endpoint, not per URL.
from loadtest.names import API, CREATE_TASK, LIST_TASKS, LOGIN, RECOMMENDATIONS, REGISTER

RECOMMENDATIONS_ENV = "FLOTILLA_LOADTEST_RECOMMENDATIONS"
LOGIN_RETRY_SECONDS = 5.0
TOKEN_ENV = "FLOTILLA_LOADTEST_TOKEN"  # noqa: S105 - the variable name, not a secret


def _enabled(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def token_subject(token: str) -> str:
    """The ``sub`` claim of a JWT, read without verification (the services verify it)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


def _error_code(body: str | None) -> str:
    try:
        return str(json.loads(body or "").get("error_code", ""))
    except (ValueError, AttributeError):
        return ""


class TasksUser(FastHttpUser):
    wait_time = between(0.1, 0.5)
    # Fail fast instead of hiding saturation behind minute-long client timeouts.
    connection_timeout = 10.0
    network_timeout = 10.0

    token: str = ""
    user_id: str = ""

    credentials: dict[str, str] | None = None
    retry_login_at: float = 0.0

    def on_start(self) -> None:
        shared = os.environ.get(TOKEN_ENV, "")
        if shared:
            self._use(shared)
            return
        credentials = {"email": f"lt-{uuid.uuid4().hex}@example.com", "password": f"lt-{uuid.uuid4().hex}"}
        if self._call("POST", f"{API}/auth/register", REGISTER, json=credentials) is not None:
            self.credentials = credentials
            self._login()

    def _login(self) -> None:
        body = self._call("POST", f"{API}/auth/login", LOGIN, json=self.credentials)
        if isinstance(body, dict) and body.get("access_token"):
            self._use(str(body["access_token"]))

    def _use(self, token: str) -> None:
        self.token = token
        self.user_id = token_subject(token)

    def _authenticated(self) -> bool:
        """A user whose login failed (counted as a failure) logs in again, at most every
        LOGIN_RETRY_SECONDS, instead of sending requests that can only be refused or
        hammering an overloaded auth service."""
        if not self.token and time.monotonic() >= self.retry_login_at:
            self.retry_login_at = time.monotonic() + LOGIN_RETRY_SECONDS
            if self.credentials is None:
                self.on_start()
            else:
                self._login()
        return bool(self.token)

    def _call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """One request, counted as a failure unless it answers 2xx; returns the JSON body
        ({} when empty), or None when it failed."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with self.client.request(method, path, name=name, headers=headers, catch_response=True, **kwargs) as resp:
            if not 200 <= (resp.status_code or 0) < 300:
                # Status and error code only: the body's request id would make every failure unique.
                resp.failure(f"HTTP {resp.status_code} {_error_code(resp.text)}".rstrip())
                return None
            resp.success()
            try:
                return resp.json() if resp.text else {}
            except ValueError:
                resp.failure("response is not JSON")
                return None

    @task(3)
    def list_tasks(self) -> None:
        if self._authenticated():
            self._call("GET", f"{API}/tasks", LIST_TASKS)

    @task(1)
    def create_task(self) -> None:
        if self._authenticated():
            self._call("POST", f"{API}/tasks", CREATE_TASK,
                       json={"title": f"load test {uuid.uuid4().hex[:8]}", "priority": "high"})

    # Weight 0 leaves it out of the task set (locust repeats a task `weight` times).
    @task(1 if _enabled(RECOMMENDATIONS_ENV) else 0)
    def recommendations(self) -> None:
        if self._authenticated():
            self._call("GET", f"{API}/recommendations/{self.user_id}", RECOMMENDATIONS)
