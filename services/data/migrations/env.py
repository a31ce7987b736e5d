from services.data.models import DataBase
from services.kit.migrations import run_migrations

run_migrations(DataBase.metadata)
