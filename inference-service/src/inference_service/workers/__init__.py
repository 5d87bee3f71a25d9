"""The background loops of the job service: outbox relay, result folder, deadline sweeper
and the live event feed. Each is its own class with `run(stop)`, so a deployment can run
them in separate processes; by default they share the API's event loop.
"""
