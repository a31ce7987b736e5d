"""Flotilla's kopf operator: ServiceSpec → PostgreSQL database, Redis ACL user, dashboards.

Run it with ``python -m flotilla_operator`` (see ``__main__``); the kopf handlers live in
``handlers`` and register themselves on import. ``crd.yaml`` is the CRD's one source.
"""
