"""Helpers for tests that start real processes (web, worker, broker) on loopback."""

import json
import socket
import subprocess
import threading
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
