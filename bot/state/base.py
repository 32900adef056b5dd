"""The state store interface and the records it keeps.

Every method is a coroutine, so an implementation may do network I/O (a
shared store for several replicas) or run blocking calls in a worker thread
(SQLite). Times are aware UTC datetimes. `ALL_ASSISTANTS` as the assistant of
a subscription means every assistant in scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

ALL_ASSISTANTS = "all"

Level = Literal["failures", "all"]
AlertKind = Literal["failure", "recovery", "stuck", "completed"]
ThreadState = Literal["red", "green"]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A channel's subscription to one assistant, or to every assistant in scope."""

    channel_id: str
    assistant: str
    level: Level
    created_by: str
    created_at: datetime
    last_alert_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SeenBuild:
    """The last status the poller saw for one build, and whether it was alerted as stuck."""

    assistant: str
    build_sid: str
    status: str | None
    date_created: datetime | None
    stuck_alerted: bool = False


@dataclass(frozen=True, slots=True)
class AssistantState:
    """The poller's record of an assistant: when it was first seen and whether it is red."""

    assistant: str
    baseline_at: datetime
    red: bool = False
    assistant_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    """The alert thread of an assistant in a channel: its parent message and failure streak."""

    channel_id: str
    assistant: str
    parent_ts: str
    state: ThreadState
    failures: int
    opened_at: datetime
    first_build: str | None = None


@dataclass(frozen=True, slots=True)
class Mute:
    """Alerts of an assistant muted in a channel until `until`."""

    channel_id: str
    assistant: str
    muted_by: str
    until: datetime


@dataclass(frozen=True, slots=True)
class Digest:
    """A channel's daily summary: local time of day (`HH:MM`) in an IANA timezone, and the last local day sent."""

    channel_id: str
    time_of_day: str
    timezone: str
    created_by: str
    created_at: datetime
    last_sent_on: date | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert to enqueue: what happened to which build, for which channel.

    `build` is the build as JSON-ready data (sid, unique_name, status,
    error_code, build_duration, date_created), so the message can be rendered
    when it is sent.
    """

    channel_id: str
    assistant: str
    kind: AlertKind
    build: dict[str, object]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An alert in the outbox, with its delivery attempts so far."""

    id: int
    alert: Alert
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class StateStore(Protocol):
    """Durable alert state; every write that belongs together happens in one transaction.

    A store that cannot reach its backend raises `bot.errors.StateUnavailableError`.
    """

    async def open(self) -> None:
        """Create tables if needed and get ready for use."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def ping(self) -> None:
        """Return when the backend responds; raise `StateUnavailableError` when it does not."""

    # Coordination between replicas

    async def acquire_lease(self, name: str, holder: str, *, ttl: float) -> bool:
        """Take or renew the lease `name` for `holder` for `ttl` seconds; return whether `holder` holds it now.

        Only one holder at a time holds a lease; it lapses `ttl` seconds after its last renewal.
        """

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease `name` if `holder` holds it."""

    async def claim_alert(self, item_id: int, holder: str, *, ttl: float) -> bool:
        """Claim an outbox alert for sending for `ttl` seconds; return False when another holder has it."""

    # Subscriptions

    async def subscribe(self, subscription: Subscription) -> None:
        """Insert or replace the subscription of a channel to an assistant."""

    async def unsubscribe(self, channel_id: str, assistant: str) -> bool:
        """Delete a subscription; return whether one existed."""

    async def subscriptions(self, channel_id: str | None = None) -> list[Subscription]:
        """Return the subscriptions of one channel, or of every channel, oldest first."""

    async def record_delivery(self, channel_id: str, assistant: str, *, at: datetime, error: str | None) -> None:
        """Record on the subscription the last alert delivered (error None, which clears the last error) or the last delivery error."""

    # Poller state

    async def assistant_state(self, assistant: str) -> AssistantState | None:
        """Return the poller's record of an assistant, or None before its first poll."""

    async def seen_builds(self, assistant: str) -> dict[str, SeenBuild]:
        """Return the seen builds of an assistant by build SID."""

    async def record_poll(
        self,
        state: AssistantState,
        seen: Sequence[SeenBuild],
        alerts: Sequence[Alert],
        *,
        at: datetime,
    ) -> list[int]:
        """In one transaction: store the assistant state and seen builds, and enqueue `alerts`.

        Returns the outbox ids of the enqueued alerts, in order.
        """

    async def prune_seen(self, older_than: datetime) -> int:
        """Delete seen builds created before `older_than`; return how many."""

    # Threads

    async def thread(self, channel_id: str, assistant: str) -> Thread | None:
        """Return the alert thread of an assistant in a channel, or None."""

    async def save_thread(self, thread: Thread) -> None:
        """Insert or replace the alert thread of an assistant in a channel."""

    # Mutes

    async def mute(self, mute: Mute) -> None:
        """Insert or replace a mute."""

    async def unmute(self, channel_id: str, assistant: str) -> bool:
        """Delete a mute; return whether one existed."""

    async def active_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the mute of an assistant in a channel if it lasts beyond `now`, else None."""

    async def mutes(self, *, now: datetime) -> list[Mute]:
        """Return every mute that lasts beyond `now`, ordered by channel then assistant."""

    def cached_mute(self, channel_id: str, assistant: str, *, now: datetime) -> Mute | None:
        """Return the same as `active_mute`, from memory and without I/O, for replies inside an acknowledgement."""

    # Digests

    async def set_digest(self, digest: Digest) -> None:
        """Insert or replace the digest of a channel, keeping its `last_sent_on` when the row exists."""

    async def remove_digest(self, channel_id: str) -> bool:
        """Delete the digest of a channel; return whether one existed."""

    async def digests(self) -> list[Digest]:
        """Return every channel's digest, ordered by channel."""

    async def mark_digest_sent(self, channel_id: str, day: date) -> None:
        """Record that the digest for the local day `day` went out; a no-op when the channel has no digest."""

    # Outbox

    async def due_alerts(self, *, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Return unsent alerts whose next attempt is due, oldest first."""

    async def pending_alerts(self, channel_id: str | None = None) -> list[OutboxItem]:
        """Return every unsent alert, of one channel or of all, oldest first."""

    async def mark_sent(self, item_id: int, *, at: datetime, thread: Thread | None = None) -> None:
        """In one transaction: mark an alert sent and save the thread it created or changed.

        Raises `LookupError` for an unknown id, and then saves no thread.
        """

    async def mark_failed(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt, keep the error, and set when to try again; `LookupError` for an unknown id."""
