"""`POST /twilio/model-builds`: Twilio's build status callbacks, which trigger an immediate poll.

The callback's fields are not documented, so its payload is never used for
content: a callback with a valid `X-Twilio-Signature` only starts the next
poll now. Anything else gets 403 and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.twilio_signature import is_valid_signature

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/twilio/model-builds"
MAX_CALLBACK_BYTES = 64 * 1024


def callback_handler(
    *, public_url: str, auth_token: str | None, trigger_poll: Callable[[], None]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Return the aiohttp handler that checks the signature against `public_url` and triggers a poll."""

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_CALLBACK_BYTES:
            logger.warning("callback.too_large", extra={"bytes": request.content_length})
            return web.Response(status=413, text="callback body too large")

        form = await request.post()
        params = {key: [str(value) for value in form.getall(key)] for key in set(form.keys())}
        url = public_url.rstrip("/") + request.path_qs
        signature = request.headers.get("X-Twilio-Signature")

        if auth_token is None or not is_valid_signature(url, params, signature, auth_token):
            logger.warning("callback.rejected", extra={"url": url, "has_signature": signature is not None, "can_verify": auth_token is not None})
            return web.Response(status=403, text="invalid X-Twilio-Signature")

        logger.info("callback.accepted", extra={"url": url})
        trigger_poll()
        return web.Response(status=204)

    return handle
