"""Helpers for tests that start real processes (web, worker, broker) on loopback."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def hung_port(give_up_after: float = 10.0):
    """A loopback port that accepts connections and never answers: a hung server (the kernel
    completes the handshake, nobody reads). Yields the port. It closes after `give_up_after`
    seconds at the latest, so code that waits without a timeout fails the test instead of hanging it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    timer = threading.Timer(give_up_after, listener.close)
    timer.start()
    try:
        yield listener.getsockname()[1]
    finally:
        timer.cancel()
        listener.close()


def wait_for(query, timeout: float = 60.0, what: str = "the other process"):
    """Poll `query()` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = query()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(*processes: subprocess.Popen) -> None:
    """Terminate, then kill what does not exit: never leave a process holding the test database."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def json_lines(stream, into: list[dict]) -> threading.Thread:
    """Collect the JSON lines a process writes to `stream` into `into`, in a background thread."""

    def read():
        for raw in stream:
            try:
                into.append(json.loads(raw))
            except ValueError:
                continue

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def web_start(env: dict, *, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """The production web process in miniature: gunicorn, one worker, on a free loopback port.
    Returns the process and its base URL; `stderr=subprocess.PIPE` gives its log lines as text."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "agency.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def web_answers(url: str) -> bool:
    """Whether the web process answers at all (a 503 while a dependency is down is an answer)."""
    try:
        httpx.get(f"{url}/healthz", timeout=10)
    except httpx.HTTPError:
        return False
    return True


def worker_start(env: dict, *options: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """A Celery worker with the production (prefork) pool and one child; `options` adds e.g. -B, -l INFO."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "agency", "worker", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", *options],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )  # fmt: skip


def redis_server() -> str:
    """The redis-server binary, to stop and restart a broker; CI fails without it, elsewhere the test skips."""
    import pytest

    from tests.conftest import in_ci

    found = shutil.which("redis-server")
    if found is None:
        if in_ci():
            pytest.fail("redis-server is required in CI to stop and restart a broker")
        pytest.skip("redis-server not installed")
    return found


def broker_start(port: int) -> subprocess.Popen:
    """A throwaway Redis broker on `port` (nothing kept on disk)."""
    return subprocess.Popen(
        [redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def broker_down_env(**extra: str) -> tuple[dict, int]:
    """The environment of processes whose broker is down (nothing listens on its port yet) and that
    share the test database; returns it and the broker's port, where `broker_start` brings it back."""
    from tests.conftest import database_url

    redis_server()  # before anything starts: the test must be able to bring the broker back
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "CELERY_BROKER_CONNECTION_TIMEOUT": "1",
        "LOG_FORMAT": "json",
        **extra,
    }
    return env, port
