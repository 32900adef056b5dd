"""Start and stop the processes under test: the sandbox API, the bot and the baseline, all on 127.0.0.1.

Each runs in its own process, apart from the load generator, so the
generator's CPU time never counts as the server's latency, and so resident
memory is read for the server alone. Every process is stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.slack import BOT_TOKEN, SIGNING_SECRET, SlackStandIn

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 3.0

Kind = Literal["bot", "baseline"]


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM to `process`, then SIGKILL if it has not exited within STOP_TIMEOUT seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Sandbox:
    """A running sandbox process: its API base URL, credentials and control endpoint."""

    process: subprocess.Popen[bytes]
    base_url: str
    control_url: str
    account_sid: str
    auth_token: str
    latency: float

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time of the sandbox process so far, in seconds."""
        return cpu_seconds(self.process.pid)

    async def request_count(self) -> tuple[int, dict[str, int]]:
        """Return the number of API requests since the last reset, and the count per path."""
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{self.control_url}/requests")).json()
        return body["count"], body["paths"]

    async def reset(self) -> None:
        """Empty the sandbox's request log."""
        async with httpx.AsyncClient() as http:
            (await http.post(f"{self.control_url}/reset")).raise_for_status()

    async def targets(self) -> list[tuple[str, str]]:
        """Return every (assistant, build SID) pair of the dataset."""
        async with httpx.AsyncClient(timeout=30) as http:
            return [tuple(pair) for pair in (await http.get(f"{self.control_url}/targets")).json()]


@contextlib.asynccontextmanager
async def sandbox(*, assistants: int, builds: int, latency: float) -> AsyncIterator[Sandbox]:
    """Run `bench.sandbox_proc` with a dataset of that size and `latency` seconds before every response."""
    command = [sys.executable, "-m", "bench.sandbox_proc", "--assistants", str(assistants), "--builds", str(builds), "--latency", str(latency)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), START_TIMEOUT)
        if not line:
            raise RuntimeError(f"the sandbox process exited with status {process.wait()} before it printed its address")
        ready: dict[str, Any] = json.loads(line)
        yield Sandbox(process, ready["base_url"], ready["control_url"], ready["account_sid"], ready["auth_token"], latency)
    finally:
        _stop(process)


@dataclass
class Server:
    """A running bot or baseline process listening on `port`."""

    kind: Kind
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """Return the server's process ID."""
        return self.process.pid

    def rss_mb(self) -> float:
        """Return the resident set size of the server process (VmRSS) in MiB."""
        return _status_kb(self.pid, "VmRSS") / 1024

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time of the server process so far, in seconds."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the server's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of process `pid` so far, from /proc/PID/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field_name} line")


def server_environment(box: Sandbox, slack: SlackStandIn, **extra: str) -> dict[str, str]:
    """Return the environment that points a bot or baseline at `box` and `slack`, plus `extra`."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "AUTOPILOT_BASE_URL": box.base_url,
        "TWILIO_ACCOUNT_SID": box.account_sid,
        "TWILIO_AUTH_TOKEN": box.auth_token,
        "SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BUILDS_STATE_URL": "sqlite:///:memory:",
        **extra,
    }


@contextlib.asynccontextmanager
async def servers(environment: Mapping[str, str], *, kinds: tuple[Kind, ...] = ("bot", "baseline")) -> AsyncIterator[dict[Kind, Server]]:
    """Run the bot (`builds-bot serve --http`) and the baseline on free loopback ports until the block ends.

    They start at the same time, so their start-up times overlap. Measure one at a time: a server
    waiting idle for its turn takes no CPU time.
    """
    started: dict[Kind, Server] = {}
    try:
        for kind in kinds:
            started[kind] = _launch(kind, environment)
        await asyncio.gather(*(_wait_until_healthy(running) for running in started.values()))
        yield started
    finally:
        for running in started.values():
            _stop(running.process)
            running.log_path.unlink(missing_ok=True)


def _launch(kind: Kind, environment: Mapping[str, str]) -> Server:
    port = free_port()
    if kind == "bot":
        command = [sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.baseline", "--port", str(port)]

    with tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(environment), stdout=log_file, stderr=subprocess.STDOUT)
    return Server(kind, process, port, log_path)


async def _wait_until_healthy(running: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise RuntimeError(f"the {running.kind} exited with status {running.process.returncode}:\n{running.log_tail()}")
            try:
                if (await http.get(f"http://127.0.0.1:{running.port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the {running.kind} did not return 200 from /healthz within {START_TIMEOUT:g} s:\n{running.log_tail()}")
