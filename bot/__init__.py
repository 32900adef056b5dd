"""builds-bot: Twilio Autopilot model builds in Slack."""

__version__ = "0.1.0"
