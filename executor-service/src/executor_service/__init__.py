"""Runs TFLite models on job events and publishes result events."""
