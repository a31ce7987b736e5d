"""The architecture picture in README.md, as Mermaid (GitHub renders it), drawn from the
service catalog so a service added there cannot be missing from it.

    python -m services.kit.diagram        # prints the block README.md carries

``tests/test_readme.py`` fails when README's copy differs from what this prints.
"""

from __future__ import annotations

from services.kit import catalog


def architecture_mermaid() -> str:
    """The flowchart: client, gateway, each backend with its routes, and what they share."""
    backends = catalog.BACKENDS
    with_database = [s.name for s in catalog.SERVICES if s.has_database]
    lines = [
        "flowchart LR",
        "  subgraph flotilla[Flotilla]",
    ]
    for service in catalog.SERVICES:
        summary = service.summary.replace(";", "#59;").replace('"', "#quot;")  # Mermaid entity codes
        lines.append(f'    {service.name}["<b>{service.name}</b> :{service.local_port}<br/>{summary}"]')
    # The client's edge after the subgraph: a node Mermaid meets first outside it stays outside.
    lines += ["  end", "  client([client]) -->|HTTP| gateway"]
    for service in backends:
        lines.append(f"  gateway -->|{' '.join(service.routes)}| {service.name}")
    lines += [
        f"  {' & '.join(s.name for s in catalog.SERVICES if s is not catalog.AUTH)} -. JWKS .-> auth",
        "  tasks -. task events: outbox, Redis Stream .-> data",
        f"  {' & '.join(with_database)} --> postgres[(PostgreSQL)]",
        f"  {' & '.join(s.name for s in catalog.SERVICES)} --> redis[(Redis)]",
        "  operator[[flotilla-operator]] -. ServiceSpec: database, ACL user, dashboards .-> postgres & redis",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(architecture_mermaid(), end="")
