# Competitions and results arrive with their issue (planned, not built: docs/architecture.md).
