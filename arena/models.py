# Competitions and results (SPEC §8) arrive with their issue.
