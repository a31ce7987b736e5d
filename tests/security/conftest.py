"""The security suite runs the services in-process with the service suite's fixtures:
each test against the embedded SQLite default and against real PostgreSQL + Redis."""

from tests.services.conftest import backend, database_url, redis_url

__all__ = ["backend", "database_url", "redis_url"]
