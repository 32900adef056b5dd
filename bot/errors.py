"""Errors raised by builds-bot.

Every error the bot raises on purpose derives from `BuildsBotError`, and its
message names the bad value and the fix. The reply layer turns each type into
a short plain explanation; the log keeps the detail.

    BuildsBotError
    ├── ConfigError              a setting is missing or malformed
    ├── InputError               a user typed something the bot cannot use
    │   └── InvalidIdentifierError   not a SID or unique name
    ├── CacheMiss                a cached-only lookup found nothing cached
    ├── StateUnavailableError    the state store cannot be reached
    └── AutopilotError           a request to the Autopilot API failed
        ├── AuthenticationError      wrong credentials (HTTP 401, Twilio 20003)
        ├── NotFoundError            no such assistant or build (HTTP 404, 20404)
        ├── RateLimitedError         too many requests (HTTP 429, 20429)
        ├── ServerError              the API failed (HTTP 5xx)
        ├── RequestRejectedError     any other 4xx response
        ├── ApiTimeoutError          timed out
        ├── ApiConnectionError       the connection failed
        └── InvalidResponseError     a response that is not the documented JSON
"""

from __future__ import annotations

TWILIO_ERROR_DOCS = "https://www.twilio.com/docs/errors/{code}"


class BuildsBotError(Exception):
    """Root of every error the bot raises on purpose."""


class ConfigError(BuildsBotError):
    """A setting is missing or malformed; the message names the variable and the fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class InputError(BuildsBotError):
    """A user typed something the bot cannot use; the message is safe to show them."""


class InvalidIdentifierError(InputError):
    """A typed assistant or build identifier is neither a SID nor a unique name."""

    def __init__(self, kind: str, value: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.value = value


class CacheMiss(BuildsBotError):
    """A lookup allowed to read only the cache found nothing there."""


class StateUnavailableError(BuildsBotError):
    """The state store (SQLite file or Redis server) cannot be reached; alert work waits and retries."""


class AutopilotError(BuildsBotError):
    """A request to the Autopilot API failed.

    `code`, `more_info` and `status` come from Twilio's error body when it sent
    one, and `url` is the request URL without credentials. `retry_after` is
    the wait in seconds that the response's `Retry-After` header asked for.
    """

    summary = "the Autopilot API request failed"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        code: int | None = None,
        more_info: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.code = code
        self.more_info = more_info
        self.retry_after = retry_after

    @property
    def docs_url(self) -> str | None:
        """Return Twilio's page for the error code, if the response carried one."""
        if self.code is None:
            return None
        return TWILIO_ERROR_DOCS.format(code=self.code)


class AuthenticationError(AutopilotError):
    """The API rejected the credentials (HTTP 401 or Twilio error 20003)."""

    summary = "the Autopilot API rejected the credentials"


class NotFoundError(AutopilotError):
    """The assistant or build does not exist (HTTP 404 or Twilio error 20404)."""

    summary = "not found"


class RateLimitedError(AutopilotError):
    """The API asked the bot to slow down (HTTP 429 or Twilio error 20429)."""

    summary = "the Autopilot API is rate limiting requests"


class ServerError(AutopilotError):
    """The API responded with a 5xx status."""

    summary = "the Autopilot API failed"


class RequestRejectedError(AutopilotError):
    """The API rejected the request with a 4xx status other than 401, 404 and 429."""

    summary = "the Autopilot API rejected the request"


class ApiTimeoutError(AutopilotError):
    """The API did not respond within the request deadline."""

    summary = "the Autopilot API timed out"


class ApiConnectionError(AutopilotError):
    """The connection to the API failed."""

    summary = "the Autopilot API could not be reached"


class InvalidResponseError(AutopilotError):
    """The API responded with something other than the documented JSON."""

    summary = "the Autopilot API sent an invalid response"
