"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

aiohttp's and httpx's clients spend more CPU per request, and on two cores
that time would be taken from the server under test. This client writes one
pre-built request and reads one `Content-Length` response per call, and opens
a new connection when the server closes the old one (HTTP/1.0 servers do).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    """Status code, lower-cased headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection to `host:port`, used by one client at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        """Close the connection if it is open."""
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """Send one POST and return its response, reconnecting once if the kept-alive connection was closed."""
        request = self._request("POST", path, body, headers)
        try:
            return await self._exchange(request)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            return await self._exchange(request)

    async def get(self, path: str) -> Response:
        """Send one GET and return its response."""
        request = self._request("GET", path, b"", {})
        try:
            return await self._exchange(request)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            return await self._exchange(request)

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}", f"Content-Length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _exchange(self, request: bytes) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port, limit=MAX_HEADER_BYTES)
        assert self._reader is not None
        self._writer.write(request)

        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()

        length = headers.get("content-length")
        if length is not None:
            body = await self._reader.readexactly(int(length))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            raise ValueError("chunked responses are not supported by the benchmark client")
        else:
            body = await self._reader.read()
            await self.close()

        if headers.get("connection", "").lower() == "close" or status_line.startswith("HTTP/1.0"):
            await self.close()
        return Response(status, headers, body)
