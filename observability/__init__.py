"""Operating the processes: structured logs (logs.py) with the request, workflow and
activity they belong to (context.py), and the readiness checks (readiness.py) the
service's /readyz and `python -m worker --check` answer. docs/operations.md."""
