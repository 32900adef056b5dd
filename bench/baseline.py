"""The baseline: the same lookups written the way most example Slack bots write them.

A synchronous Bolt `App` with Bolt's defaults: the listener calls `ack()`,
then makes blocking httpx requests one after another, with no cache, and
sends the reply with `respond()` to the command's response_url. Bolt runs
listeners in its default thread pool of 5 workers and waits up to 3 s for
`ack()`. It parses and renders with the bot's own functions, so the
comparison measures concurrency and caching, not parsing or Block Kit code.

It is served by the standard library's `ThreadingHTTPServer` on 127.0.0.1,
which does what Bolt's `app.start()` development server does but with a
thread per connection and HTTP/1.1 keep-alive: both in the baseline's favour.

Run: `python -m bench.baseline --port 3001`, with the bot's environment variables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from slack_bolt import Ack, App, BoltRequest, Respond
from slack_sdk import WebClient

from bot.autopilot import Listing
from bot.commands import AssistantBuilds, BuildDetails, FailedBuilds, Help, parse_command
from bot.errors import InputError
from bot.models import ModelBuild, newest_first, parse_assistant, parse_model_build, parse_model_build_body, parse_page
from bot.render import AssistantFailures, FailedReport, Reply, render_assistant_builds, render_build_details, render_failed, render_help
from bot.stats import failed_within

PAGE_SIZE = 1000
REQUEST_TIMEOUT = 10.0

logger = logging.getLogger(__name__)


class BlockingAutopilot:
    """Autopilot reads with one blocking httpx client, following next_page_url, page after page."""

    def __init__(self, base_url: str, account_sid: str, auth_token: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = httpx.Client(auth=(account_sid, auth_token), timeout=REQUEST_TIMEOUT)

    def list_assistants(self) -> list[str]:
        """Return the unique name (or SID) of every assistant."""
        raw = self._walk(f"{self._base_url}/v1/Assistants", "assistants")
        return [key for key in (parse_assistant(item).unique_name or parse_assistant(item).sid for item in raw) if key]

    def list_builds(self, assistant: str) -> Listing[ModelBuild]:
        """Return every build of `assistant`, newest first."""
        raw = self._walk(f"{self._base_url}/v1/Assistants/{assistant}/ModelBuilds", "model_builds")
        return Listing(newest_first(parse_model_build(item) for item in raw))

    def fetch_build(self, assistant: str, build: str) -> ModelBuild:
        """Return one build of `assistant`."""
        response = self._http.get(f"{self._base_url}/v1/Assistants/{assistant}/ModelBuilds/{build}")
        response.raise_for_status()
        return parse_model_build_body(response.json())

    def _walk(self, url: str, key: str) -> list[Any]:
        response = self._http.get(url, params={"PageSize": PAGE_SIZE})
        items: list[Any] = []
        while True:
            response.raise_for_status()
            page = parse_page(response.json(), key)
            items.extend(page.items)
            if page.next_page_url is None:
                return items
            response = self._http.get(page.next_page_url)


def answer(api: BlockingAutopilot, text: str, assistants_in_scope: list[str]) -> Reply:
    """Return the reply to `text`, reading the API once per page, one request after another."""
    command = parse_command(text)
    now = datetime.now(UTC)
    if isinstance(command, AssistantBuilds):
        return render_assistant_builds(command.assistant, api.list_builds(command.assistant), status=command.status, now=now)
    if isinstance(command, BuildDetails):
        return render_build_details(command.assistant, api.fetch_build(command.assistant, command.build), now=now)
    if isinstance(command, FailedBuilds):
        return _failed(api, command, assistants_in_scope or api.list_assistants(), now=now)
    if isinstance(command, Help):
        return render_help("/builds")
    raise InputError(f"the baseline does not implement {type(command).__name__}")


def _failed(api: BlockingAutopilot, command: FailedBuilds, assistants: list[str], *, now: datetime) -> Reply:
    since = now - command.window
    groups = [AssistantFailures(assistant, failed_within(api.list_builds(assistant).items, since=since)) for assistant in assistants]
    report = FailedReport(window_text=command.window_text, since=since, assistants_checked=len(assistants), groups=groups)
    return render_failed(report, now=now)


def create_baseline_app(environ: dict[str, str]) -> App:
    """Return the sync Bolt app with its one `/builds` listener."""
    client = WebClient(token=environ["SLACK_BOT_TOKEN"], base_url=environ["SLACK_API_URL"])
    app = App(client=client, signing_secret=environ["SLACK_SIGNING_SECRET"])
    api = BlockingAutopilot(environ["AUTOPILOT_BASE_URL"], environ["TWILIO_ACCOUNT_SID"], environ["TWILIO_AUTH_TOKEN"])
    scope = [name for name in environ.get("BUILDS_ASSISTANTS", "").split(",") if name]

    @app.command("/builds")
    def builds(ack: Ack, respond: Respond, command: dict[str, Any]) -> None:
        ack()
        try:
            reply = answer(api, command.get("text", ""), scope)
        except (httpx.HTTPError, InputError) as error:
            logger.warning("baseline.lookup_failed: %r", error)
            respond(text=f"Could not read the builds: {error}", response_type="ephemeral")
            return
        payload = reply.to_dict()
        respond(text=payload["text"], blocks=payload["blocks"], response_type="ephemeral", replace_original=False)

    return app


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog of 5 drops the connections of a burst of clients, and
    # each dropped one waits a second to retry, which would count against the baseline.
    request_queue_size = 128
    daemon_threads = True


def _handler(app: App) -> type[BaseHTTPRequestHandler]:
    class BoltHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200 if self.path == "/healthz" else 404, {}, "")

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if path != "/slack/events":
                self._send(404, {}, "")
                return
            response = app.dispatch(BoltRequest(body=body, query=query, headers=self.headers))
            self._send(response.status, response.headers, response.body)

        def _send(self, status: int, headers: dict[str, Any], body: str) -> None:
            data = body.encode()
            self.send_response(status)
            for name, values in headers.items():
                if name.lower() != "content-length":
                    for value in values:
                        self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return BoltHandler


def main() -> int:
    """Serve the baseline on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(description="The synchronous baseline bot, on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    app = create_baseline_app(dict(os.environ))
    server = _Server(("127.0.0.1", args.port), _handler(app))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
