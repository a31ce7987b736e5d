"""What every Flotilla service shares: settings, app factory, db, cache, errors, health...

Import from the submodules; this package re-exports the few names services use most.
"""

from services.kit.app import Kit, create_service_app
from services.kit.errors import (
    Conflict,
    DependencyUnavailable,
    FlotillaError,
    Forbidden,
    NotFound,
    Unauthorized,
)
from services.kit.settings import ServiceSettings

__all__ = [
    "Conflict",
    "DependencyUnavailable",
    "FlotillaError",
    "Forbidden",
    "Kit",
    "NotFound",
    "ServiceSettings",
    "Unauthorized",
    "create_service_app",
]
