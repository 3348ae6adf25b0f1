"""Durations as an operator says them (the inbox's waiting times, the dashboard's oldest wait)."""

from datetime import timedelta


def duration_text(elapsed: timedelta) -> str:
    """As precisely as someone deciding what to pick up needs: "45 min", "3 h 12 min", "2 d 4 h"."""
    minutes = max(0, int(elapsed.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
