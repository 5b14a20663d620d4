"""Supervisor reports and saved views: assessment figures from the system of record
(`reports.metrics`), periods (`reports.periods`), rendering and charts, and the
ready-made Temporal list filters supervisors paste into the Web UI (`reports.views`)."""
