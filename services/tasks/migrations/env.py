from services.kit.migrations import run_migrations
from services.tasks.models import TasksBase

run_migrations(TasksBase.metadata)
