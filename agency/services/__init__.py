"""Writes of the agency core, one module per idea; adapters (API, admin, tasks, commands) call these."""
