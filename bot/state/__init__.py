"""Durable state for alerts: subscriptions, seen builds, threads, mutes and the outbox."""

from bot.state.base import (
    Alert,
    AssistantState,
    Mute,
    OutboxItem,
    SeenBuild,
    StateStore,
    Subscription,
    Thread,
)

__all__ = ["Alert", "AssistantState", "Mute", "OutboxItem", "SeenBuild", "StateStore", "Subscription", "Thread"]
