"""Celery entry points of the arena: thin adapters over `arena.services` (docs/arena.md)."""

from celery import shared_task

from agency.pipeline import worker_name


@shared_task(name="arena.competition_side")
def competition_side(competition_id: int, side: str) -> str:
    """Run one side of a competition; the two sides of one competition are two of these, at once
    on two workers. A redelivered message finds its side claimed or finished."""
    from arena.services.competitions import competition_side_run

    return competition_side_run(competition_id=competition_id, side=side, worker=worker_name())


@shared_task(name="arena.competition_join")
def competition_join(competition_id: int) -> str:
    """Queued by each side as it finishes: decides once both are done, and only once."""
    from arena.services.competitions import competition_decide

    return competition_decide(competition_id=competition_id)
