"""Path and form values that the service looks up in PostgreSQL (registration numbers,
unit codes, person and client ids): printable and at most a column's 64 characters.
PostgreSQL cannot store NUL, so an unchecked `%00` in a path was a 500 (found probing
the edges beside the Schemathesis run); now it is a 422 naming the parameter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

# No control characters (NUL above all); legacy registration numbers may hold any other
# character, so nothing stricter.
KEY_PATTERN = r"^[^\x00-\x1f\x7f]{1,64}$"

RegistrationNo = Annotated[str, Path(pattern=KEY_PATTERN,
                                     description="The petition's registration number")]
UnitCode = Annotated[str, Path(pattern=KEY_PATTERN, description="A unit's code")]
