"""Names for new services: refused with a one-line reason when any part of the platform would choke."""

from __future__ import annotations

import pytest

from services.kit import catalog
from services.kit.names import BadServiceName, validate_service_name


@pytest.mark.parametrize("name", ["notes", "billing", "search2", "a" * 30])
def test_good_names_pass(name: str) -> None:
    assert validate_service_name(name) == name


@pytest.mark.parametrize(("name", "reason"), [
    ("", "empty"),
    ("my-service", "lowercase letter"),       # not a Python package
    ("my_service", "lowercase letter"),       # not a DNS-1123 label
    ("Notes", "lowercase letter"),            # Kubernetes names are lowercase
    ("2fa", "lowercase letter"),              # neither a package nor a label
    ("notes.v2", "lowercase letter"),
    ("nötes", "lowercase letter"),
    ("a" * 31, "longer than 30"),
    ("class", "Python keyword"),
    ("match", "Python keyword"),
    ("json", "standard library"),
    ("user", "reserved word in SQL"),         # PostgreSQL rejects it unquoted as a role/database
    ("order", "reserved word in SQL"),
    ("kit", "reserved"),
    ("redis", "reserved"),                    # the dev Redis Service is <release>-redis
    ("ingress", "reserved"),                  # a top-level key of the umbrella values
    *[(s.name, "already exists") for s in catalog.SERVICES],
])
def test_bad_names_are_refused_in_one_line(name: str, reason: str) -> None:
    with pytest.raises(BadServiceName) as caught:
        validate_service_name(name)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("route", "reason"), [
    ("/api/v1/tasks", "overlaps '/api/v1/tasks'"),
    ("/api/v1/tasks/notes", "overlaps '/api/v1/tasks'"),
    ("/api/v1", "bad route"),
    ("/.well-known/jwks.json", "bad route"),
    ("/api/v1/Notes", "bad route"),
    ("api/v1/notes", "bad route"),
    ("/api/v1/notes/", "bad route"),
])
def test_routes_must_be_api_paths_that_collide_with_nothing(route: str, reason: str) -> None:
    with pytest.raises(BadServiceName) as caught:
        validate_service_name("notes", route=route)
    assert reason in str(caught.value)


def test_a_route_owned_by_a_prefix_of_it_collides_both_ways() -> None:
    mine = catalog.ServiceInfo(name="x", local_port=1, factory="", routes=("/api/v1/notes/archive",))
    with pytest.raises(BadServiceName, match="overlaps"):
        validate_service_name("notes", services=[mine])
    assert validate_service_name("notes", route="/api/v2/notes", services=[mine]) == "notes"
