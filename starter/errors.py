"""One-line error messages for people at a terminal."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation(err: ValidationError) -> str:
    """`field.path: message` for the first problem, and how many more there are."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(input)"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"invalid field {where}: {first['msg']}{tail}"
