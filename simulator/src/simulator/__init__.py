"""Simulated traffic through the public API, and a human-readable view of the event log."""
