"""`petition import FILE.csv`, by stage: `read` (the CSV and its record model), `validate`
(row checks), `replay` (a record replayed through the domain core into the case the
workflow would hold), `load` (COPY into PostgreSQL), `resume` (open cases start their
workflows); `importer` runs them as one all-or-nothing transaction, `command` is the CLI.
"""

from starter.legacy.importer import CHUNK_ROWS, ImportResult, import_file
from starter.legacy.read import (
    COLUMNS,
    REQUIRED_COLUMNS,
    ImportFileError,
    LegacyRecord,
    RowError,
    describe_columns,
)

__all__ = ["CHUNK_ROWS", "COLUMNS", "REQUIRED_COLUMNS", "ImportFileError", "ImportResult",
           "LegacyRecord", "RowError", "describe_columns", "import_file"]
