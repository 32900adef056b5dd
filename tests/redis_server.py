"""A private redis-server on 127.0.0.1 for tests, which never touches another Redis.

`RedisServer` runs `redis-server` as a subprocess on a free loopback port,
without persistence, in a folder the test owns. `stop()` and `start()` can be
called again and again, and the server keeps its port, so a test can cut the
store off and bring the server back where the store expects it:

    server = RedisServer(tmp_path)
    server.start()
    try:
        store = RedisStateStore(server.url)
        ...
        server.stop()   # every store call now fails
        server.start()  # same port, empty data
    finally:
        server.stop()

`pause()` and `resume()` freeze and thaw the process, so calls time out
instead of failing at once. `start()` returns once the server has logged that
it accepts connections and has replied to PING. The constructor and
`require_redis_server()` skip the calling test when `redis-server` is not on
PATH.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

HOST = "127.0.0.1"
# Seconds that start() waits for the ready line, and stop() for the process to exit.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
READY_LINE = b"Ready to accept connections"


def require_redis_server() -> str:
    """Return the path of `redis-server`, or skip the test when it is not on PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: install Redis (for example the redis-server package) to run the Redis store tests")
    return binary


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server subprocess on 127.0.0.1 that keeps its port across `stop()` and `start()`."""

    def __init__(self, directory: Path, *, password: str | None = None, binary: str | None = None) -> None:
        self.binary = binary or require_redis_server()
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        """URL of database 0 on this server, with the password when the server requires one."""
        credentials = "" if self.password is None else f":{self.password}@"
        return f"redis://{credentials}{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the subprocess was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return when it replies to PING.

        Raises:
            RuntimeError: the server is already running, exited during startup
                (its output is in the message), or was not ready within `START_TIMEOUT`.
        """
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")

        options = {"port": str(self.port), "bind": HOST, "save": "", "appendonly": "no", "daemonize": "no", "dir": str(self.directory)}
        if self.password is not None:
            options["requirepass"] = self.password
        command = [self.binary]
        for name, value in options.items():
            command += [f"--{name}", value]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: it keeps accepting TCP connections but sends no replies, as a hung server does."""
        if not self.running:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused server run again with SIGCONT."""
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        """Stop the server with SIGTERM and wait for it to exit. Stopping a stopped server does nothing."""
        process = self._process
        if process is None:
            return

        # A stopped process handles SIGTERM only once it runs again.
        self.resume()
        self._process = None
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Read the server's log until it reports that it accepts connections, then check PING."""
        assert process.stdout is not None
        descriptor = process.stdout.fileno()
        output = b""
        deadline = time.monotonic() + START_TIMEOUT

        # os.read returns what the pipe contains at once, where a buffered readline could keep
        # the ready line in its buffer while select() waits for more.
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)
            while READY_LINE not in output:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise RuntimeError(f"redis-server on port {self.port} was not ready after {START_TIMEOUT} s:\n{output.decode()}")

                chunk = os.read(descriptor, 65536)
                if not chunk:
                    raise RuntimeError(f"redis-server on port {self.port} exited during startup:\n{output.decode()}")
                output += chunk

        self._check_ping()

    def _check_ping(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=START_TIMEOUT) as connection:
            if self.password is not None:
                self._send(connection, f"AUTH {self.password}", expected=b"+OK\r\n")
            self._send(connection, "PING", expected=b"+PONG\r\n")

    def _send(self, connection: socket.socket, command: str, *, expected: bytes) -> None:
        """Send an inline command and raise RuntimeError unless the reply is `expected`."""
        connection.sendall(command.encode() + b"\r\n")
        reply = connection.recv(256)
        if reply != expected:
            name = command.split()[0]
            raise RuntimeError(f"redis-server on port {self.port} replied to {name} with {reply!r}, expected {expected!r}")
