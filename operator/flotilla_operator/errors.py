"""Failure kinds the handlers turn into conditions, retries or a permanent stop."""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base: ``reason`` becomes the condition's reason (CamelCase, no spaces)."""

    reason = "ProvisioningFailed"


class DependencyUnavailable(ProvisioningError):
    """PostgreSQL, Redis or the Kubernetes API cannot be reached: retry with backoff."""

    reason = "DependencyUnavailable"


class OwnershipConflict(ProvisioningError):
    """A role, database or ACL user of that name exists and belongs to someone else."""

    reason = "OwnershipConflict"
