"""Entry for the plain kopf CLI: ``kopf run -m flotilla_operator.kopfrun --standalone -A``.

Registers the handlers into kopf's default registry with settings from the environment.
``python -m flotilla_operator`` is the usual way; this exists so the stock ``kopf run``
(and its flags: --liveness, --peering, --verbose) works unchanged.
"""

from __future__ import annotations

import kopf

from flotilla_operator.handlers import build_context, register
from flotilla_operator.settings import OperatorSettings

register(kopf.get_default_registry(), build_context(OperatorSettings()))
