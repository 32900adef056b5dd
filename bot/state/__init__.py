"""Durable state for alerts: subscriptions, seen builds, threads, mutes and the outbox."""

from bot.state.base import (
    Alert,
    AssistantState,
    Digest,
    Mute,
    OutboxItem,
    SeenBuild,
    StateStore,
    Subscription,
    Thread,
)

__all__ = ["Alert", "AssistantState", "Digest", "Mute", "OutboxItem", "SeenBuild", "StateStore", "Subscription", "Thread"]
