"""Fault drills: crashes, restarts and outages against the real stack, with the ledger
checked afterwards for anything lost or done twice.

- `worker_kills`: kill -9 the worker, at random and right after a payment or a transfer
  order is committed, while petitions are being transferred and paid;
- `server_restart`: stop the Temporal dev server (on its database file) with open
  petitions whose reminders fall due while it is down, and start it again;
- `postgres_outage`: stop PostgreSQL under load and start it again.

Run them all with `python -m drills` (counts printed); the tests run short versions.
"""
