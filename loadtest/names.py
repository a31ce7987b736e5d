"""Request names of the reference workload, shared by the locustfile and the results table.

Kept apart from the locustfile because importing locust monkey-patches the process
for gevent; the runner must be able to read these names without that.
"""

from __future__ import annotations

API = "/api/v1"
REGISTER = f"POST {API}/auth/register"
LOGIN = f"POST {API}/auth/login"
LIST_TASKS = f"GET {API}/tasks"
CREATE_TASK = f"POST {API}/tasks"
RECOMMENDATIONS = f"GET {API}/recommendations/{{user_id}}"
#: The rows the targets are judged on: the steady-state workload, not the one-off logins.
WORKLOAD_NAMES = (LIST_TASKS, CREATE_TASK, RECOMMENDATIONS)
