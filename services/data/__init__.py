"""The data service: consumes task events, serves per-user stats and recommendations."""
