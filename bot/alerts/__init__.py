"""Channel alerts: change detection, polling, message rendering and outbox delivery."""
