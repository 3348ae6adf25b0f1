"""Run the same work in several threads at once, each with its own database connection."""

import threading
from collections.abc import Callable

from django.db import connection


def run_at_once(count: int, work: Callable[[int], object], timeout: float = 30) -> list:
    """Start `count` threads that all call `work(i)` at the same moment; returns their results.

    A barrier lines the threads up before the work starts, so the calls really
    overlap; each thread closes its connection, which Django opened for it.
    """
    barrier = threading.Barrier(count)
    results: list = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results.append(work(i))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
