"""``python -m flotilla_operator``: run the operator, like ``kopf run`` with our defaults.

    python -m flotilla_operator --all-namespaces --liveness http://0.0.0.0:8080/healthz
    python -m flotilla_operator --namespace flotilla --peering flotilla-operator

With --namespace the operator needs no cluster-wide permission at all (kopf's scanning of
namespaces and CRDs is off); the chart's default RBAC is exactly that.

Settings (database/Redis admin credentials, intervals, metrics port) come from
FLOTILLA_OPERATOR_* environment variables; see settings.py.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from flotilla_operator.handlers import Context, build_context, register
from flotilla_operator.settings import OperatorSettings
from services.kit.logging import configure_logging


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flotilla_operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="namespace (or glob) to watch; repeatable")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--peering", metavar="NAME", default=None,
                         help="kopf peering object name: replicas elect one active operator "
                              "(needs kopf's KopfPeering CRDs)")
    peering.add_argument("--standalone", action="store_true", default=False,
                         help="no peering: for exactly one replica (the default)")
    parser.add_argument("--liveness", metavar="URL", default="http://0.0.0.0:8080/healthz",
                        help="kopf's liveness endpoint; empty to disable")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority of this instance; default: a random one, so that replicas "
                             "(started with the same arguments) never tie — kopf pauses every operator "
                             "of a tied priority")
    return parser.parse_args(argv)


async def run(ctx: Context, *, namespaces: Sequence[str] = (), clusterwide: bool = True,
              peering: str | None = None, liveness: str | None = None, priority: int = 0,
              stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
    """Run the operator until ``stop_flag`` is set (or forever): the tests' entry point too."""
    registry = kopf.OperatorRegistry()
    clusterwide = clusterwide and not namespaces
    register(registry, ctx, clusterwide=clusterwide)
    await kopf.operator(
        registry=registry,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=liveness or None,
        clusterwide=clusterwide,
        namespaces=list(namespaces),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = OperatorSettings()
    configure_logging(level=settings.log_level, json=settings.log_json, service="flotilla-operator")
    ctx = build_context(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=ctx.metrics.registry)
    # kopf installs signal handlers only in the main thread; say so if embedded oddly.
    assert threading.current_thread() is threading.main_thread()
    priority = args.priority if args.priority is not None else peering_priority()
    asyncio.run(run(ctx, namespaces=args.namespace, clusterwide=not args.namespace,
                    peering=args.peering, liveness=args.liveness, priority=priority))


def peering_priority() -> int:
    """A random priority: among replicas the highest acts, the others stand by."""
    return 1 + secrets.randbelow(2**31 - 2)


if __name__ == "__main__":
    main()
