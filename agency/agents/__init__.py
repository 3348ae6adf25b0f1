"""The agents that do the client's work; `tables` and `report` are the baseline agent's engine (docs/agents.md)."""
