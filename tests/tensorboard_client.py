"""A real TensorBoard server for tests, and the few HTTP routes they read.

The server listens on 127.0.0.1 only and is always stopped; requests bypass any proxy.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STARTUP_SECONDS = 90
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(base: str, route: str, **query: str) -> Any:
    url = f"{base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with OPENER.open(url, timeout=30) as response:
        return json.load(response)


def post(base: str, route: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{base}{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=30) as response:
        return json.load(response)


def scalar_series(base: str, run: str, tag: str) -> list[list[float]]:
    """[[wall_time, step, value], ...]: only measured points, no placeholder at step 0."""
    return get(base, "/data/plugin/scalars/scalars", run=run, tag=tag)


@contextmanager
def tensorboard_server(logdir: Path, log_path: Path,
                       loaded: Callable[[str], bool]) -> Iterator[str]:
    """`tensorboard --logdir LOGDIR` on a free port; yields its base URL once `loaded(base)`
    is true (TensorBoard loads runs in the background), and stops it afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"tensorboard exited: {log_path.read_text()[-3000:]}"
            try:
                if loaded(base):
                    break
            except OSError:  # not listening yet, or a run not loaded yet (HTTP 400)
                pass
            assert time.monotonic() < deadline, (
                f"tensorboard did not serve {logdir} within {STARTUP_SECONDS} s: "
                f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
