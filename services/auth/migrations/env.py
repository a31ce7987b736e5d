from services.auth.models import AuthBase
from services.kit.migrations import run_migrations

run_migrations(AuthBase.metadata)
