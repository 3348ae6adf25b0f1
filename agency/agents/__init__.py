"""The agents that do the work of tasks (docs/agents.md)."""
