"""The agents that do the agency's work, and what they may run (docs/agents.md)."""
