from services.kit.migrations import run_migrations
from services.users.models import UsersBase

run_migrations(UsersBase.metadata)
