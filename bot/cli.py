"""The `builds-bot` command line: serve, sandbox, query and demo.

Examples:

    builds-bot demo                      # sandbox API + `failed`, no configuration needed
    builds-bot demo "support-bot"        # any command text works
    builds-bot query "support-bot failed" --json
    builds-bot sandbox --port 8081       # an Autopilot-compatible API for trying the bot
    builds-bot serve                     # Socket Mode if SLACK_APP_TOKEN is set, else HTTP
    builds-bot serve --http --port 3000
    builds-bot check                     # configuration, Slack auth.test, one Autopilot request
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TextIO

from bot import __version__
from bot.autopilot import AutopilotClient
from bot.config import Secret, Settings, load_settings, log_level_from
from bot.core import BuildsCore
from bot.errors import ConfigError
from bot.logs import configure_logging
from bot.render import Reply
from bot.terminal import to_plain_text

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REPLY_ERROR = 1
EXIT_CONFIG_ERROR = 2
DEFAULT_DEMO_TEXT = "failed"
QUIET_LOG_LEVEL = "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"builds-bot: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="builds-bot", description="Twilio Autopilot model builds in Slack.")
    parser.add_argument("--version", action="version", version=f"builds-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)")
    serve.add_argument("--http", action="store_true", help="force HTTP mode even when SLACK_APP_TOKEN is set")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on in HTTP mode (default: 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on in HTTP mode (default: $PORT or 3000)")
    serve.set_defaults(handler=_serve)

    sandbox = commands.add_parser("sandbox", help="run the Autopilot-compatible sandbox API with demo data")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8081, help="port to listen on, 0 for any free port (default: 8081)")
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every response (default: 0)")
    sandbox.set_defaults(handler=_sandbox)

    query = commands.add_parser("query", help="run one command against the configured API and print the reply")
    query.add_argument("text", help='the text after the slash command, such as "failed 6h"')
    query.add_argument("--json", action="store_true", help="print the Block Kit payload instead of text")
    query.set_defaults(handler=_query)

    demo = commands.add_parser("demo", help="start the sandbox on a free loopback port and query it")
    demo.add_argument("text", nargs="?", default=DEFAULT_DEMO_TEXT, help=f'command text (default: "{DEFAULT_DEMO_TEXT}")')
    demo.add_argument("--json", action="store_true", help="print the Block Kit payload instead of text")
    demo.set_defaults(handler=_demo)

    check = commands.add_parser("check", help="validate the settings and reach Slack and the Autopilot API once each")
    check.set_defaults(handler=_check)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from bot.server import serve

    settings = load_settings(os.environ)
    _configure_logging(settings, settings.log_level)
    socket_mode = settings.slack_app_token is not None and not args.http
    _run(serve(settings, socket_mode=socket_mode, host=args.host, port=args.port))
    return EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from bot.sandbox import run_sandbox

    configure_logging(log_level_from(os.environ, "INFO"))
    try:
        _run_until_signal(run_sandbox(host=args.host, port=args.port, latency=args.latency))
    except OSError as error:
        print(f"builds-bot: cannot listen on {args.host}:{args.port} ({error.strerror}): pick another --port, or 0 for any free port.", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return EXIT_OK


def _query(args: argparse.Namespace) -> int:
    settings = load_settings(os.environ)
    _configure_logging(settings, log_level_from(os.environ, QUIET_LOG_LEVEL))
    reply = _run(answer(settings, args.text))
    return _print_reply(reply, as_json=args.json)


def _check(args: argparse.Namespace) -> int:
    from bot.check import run_checks

    configure_logging(log_level_from(os.environ, "ERROR"))
    results = _run(run_checks(os.environ))
    for result in results:
        print(result.line())
    return EXIT_OK if all(result.ok for result in results) else EXIT_REPLY_ERROR


def _demo(args: argparse.Namespace) -> int:
    configure_logging(log_level_from(os.environ, QUIET_LOG_LEVEL))
    reply = _run(_demo_reply(args.text, sys.stderr))
    return _print_reply(reply, as_json=args.json)


async def answer(settings: Settings, text: str) -> Reply:
    """Return the reply to one command text, read from the API that `settings` name."""
    async with AutopilotClient(settings) as client:
        return await BuildsCore(settings=settings, client=client).reply(text)


async def _demo_reply(text: str, out: TextIO) -> Reply:
    from bot.sandbox import SandboxServer

    async with SandboxServer() as sandbox:
        settings = load_settings(demo_environment(sandbox.base_url, sandbox.credentials.account_sid, sandbox.credentials.auth_token))
        print(f"Sandbox Autopilot API at {sandbox.base_url}; running: {settings.command} {text}", file=out)
        return await answer(settings, text)


def demo_environment(base_url: str, account_sid: str, auth_token: str | Secret) -> Mapping[str, str]:
    """Return the environment that points the bot at a sandbox, ignoring the caller's own settings."""
    token = auth_token.reveal() if isinstance(auth_token, Secret) else auth_token
    return {"AUTOPILOT_BASE_URL": base_url, "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": token}


def _print_reply(reply: Reply, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(reply.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(to_plain_text(reply))
    return EXIT_OK if reply.ok else EXIT_REPLY_ERROR


def _configure_logging(settings: Settings, level: str) -> None:
    secrets = [secret.reveal() for secret in _secrets(settings)]
    configure_logging(level, secrets=secrets, json_lines=settings.log_json)
    if settings.api_key is not None and settings.auth_token is not None:
        logger.warning("config.credentials_conflict: TWILIO_API_KEY is used and TWILIO_AUTH_TOKEN ignored; unset one of them")


def _secrets(settings: Settings) -> list[Secret]:
    candidates = [
        settings.auth_token,
        settings.api_secret,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
    ]
    return [secret for secret in candidates if secret is not None]


def _run(work: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(work)


def _run_until_signal(work: Coroutine[Any, Any, Any]) -> None:
    async def runner() -> None:
        task = asyncio.create_task(work)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())


if __name__ == "__main__":
    sys.exit(main())
