"""Shared by every service: settings, the event contract, client setup and assets."""
