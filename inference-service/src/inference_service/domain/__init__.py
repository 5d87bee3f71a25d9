"""The job's rules: its lifecycle, its events and how a stored job reads through the API.

Nothing here does I/O; storage and transport live in `storage/` and `workers/`.
"""
