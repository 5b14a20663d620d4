"""Kept for the modules that import from here (bench/open_cases_bench.py): the importer
is the package `starter.legacy`."""

from starter.legacy import COLUMNS, ImportResult, LegacyRecord, import_file
from starter.legacy.command import import_command

__all__ = ["COLUMNS", "ImportResult", "LegacyRecord", "import_command", "import_file"]
