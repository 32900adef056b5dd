"""Run the sandbox API with a benchmark dataset and a control endpoint, in its own process.

Prints one JSON line with the API's base URL, the control URL and the
credentials, then serves until SIGTERM or SIGINT. The control endpoint, on a
second loopback port so it never shows in the sandbox's request log, serves:

- `GET /requests`: `{"count": n, "paths": {path: n}}`, every API request since the last reset;
- `POST /reset`: empty the request log;
- `GET /targets`: `[[assistant, build_sid], ...]`, every build, for commands that need distinct lookups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter

from aiohttp import web

from bench.dataset import build_bench_dataset
from bot.sandbox import SandboxServer


def _control_app(server: SandboxServer) -> web.Application:
    async def requests(_: web.Request) -> web.Response:
        records = server.requests
        paths = Counter(f"{record.path}?{record.query_string}" if record.query_string else record.path for record in records)
        return web.json_response({"count": len(records), "paths": paths})

    async def reset(_: web.Request) -> web.Response:
        server.requests.clear()
        return web.json_response({"count": 0})

    async def targets(_: web.Request) -> web.Response:
        dataset = server.dataset
        pairs = [[assistant["unique_name"], build["sid"]] for assistant in dataset.assistants for build in dataset.builds[assistant["sid"]]]
        return web.json_response(pairs)

    app = web.Application()
    app.router.add_get("/requests", requests)
    app.router.add_post("/reset", reset)
    app.router.add_get("/targets", targets)
    return app


async def _serve(assistants: int, builds: int, latency: float) -> None:
    dataset = build_bench_dataset(assistants=assistants, builds=builds)
    async with SandboxServer(dataset=dataset, latency=latency) as server:
        runner = web.AppRunner(_control_app(server), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        control_port = runner.addresses[0][1]
        ready = {
            "base_url": server.base_url,
            "control_url": f"http://127.0.0.1:{control_port}",
            "account_sid": server.credentials.account_sid,
            "auth_token": server.credentials.auth_token,
        }
        print(json.dumps(ready), flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> int:
    """Parse the options and serve until stopped."""
    parser = argparse.ArgumentParser(description="Sandbox API with a benchmark dataset, on 127.0.0.1.")
    parser.add_argument("--assistants", type=int, required=True, help="number of assistants")
    parser.add_argument("--builds", type=int, required=True, help="model builds per assistant")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every API response")
    args = parser.parse_args()
    asyncio.run(_serve(args.assistants, args.builds, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
