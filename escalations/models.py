# Escalations and the notification outbox (SPEC §7) arrive with their issue.
