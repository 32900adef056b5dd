"""Validation of `X-Twilio-Signature` on Twilio's status callbacks.

This is the algorithm of twilio-python's `RequestValidator`: HMAC-SHA1, keyed
with the account's auth token, over the full URL followed by every POST
parameter name and value, names sorted (and each name's values sorted),
Base64-encoded. Twilio may sign the URL with or without an explicit default
port, so both forms are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def compute_signature(url: str, params: Mapping[str, Iterable[str]], auth_token: str) -> str:
    """Return the Base64 HMAC-SHA1 signature Twilio sends for `url` and POST `params`."""
    payload = url
    for key in sorted(params):
        for value in sorted(set(params[key])):
            payload += key + value

    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def is_valid_signature(url: str, params: Mapping[str, Iterable[str]], signature: str | None, auth_token: str) -> bool:
    """Return whether `signature` matches `url` with or without its default port."""
    if not signature:
        return False

    candidates = {_without_port(url), _with_port(url)}
    return any(hmac.compare_digest(compute_signature(candidate, params, auth_token), signature) for candidate in candidates)


def _without_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is None or DEFAULT_PORTS.get(parts.scheme) != parts.port:
        return url
    return urlunsplit(parts._replace(netloc=_netloc(parts.username, parts.password, host)))


def _with_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is not None or parts.scheme not in DEFAULT_PORTS:
        return url
    netloc = _netloc(parts.username, parts.password, f"{parts.hostname}:{DEFAULT_PORTS[parts.scheme]}")
    return urlunsplit(parts._replace(netloc=netloc))


def _netloc(username: str | None, password: str | None, host: str) -> str:
    if username is None:
        return host
    credentials = username if password is None else f"{username}:{password}"
    return f"{credentials}@{host}"
