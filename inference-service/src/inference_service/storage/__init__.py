"""MongoDB adapters: jobs (with their outbox), image bytes (one document each), leases.

Every query here runs on MongoDB and on FerretDB 1.x: single-document atomic updates only
(no transactions, no change streams), plain unique indexes (no partial or sparse ones).
"""
