"""One-line error messages for people at a terminal."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation(err: ValidationError) -> str:
    """`field.path: message` for the first problem, and how many more there are."""
    first = err.errors()[0]
    where = ".".join(one_line(str(p), 60) for p in first["loc"]) or "(input)"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"invalid field {where}: {one_line(first['msg'], 300)}{tail}"


def one_line(text: str, limit: int) -> str:
    """Hostile input (a field name with a line break, a megabyte-long key) must not
    turn an error into many lines: escape what is not printable, cut what is long."""
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return safe + ("..." if len(text) > limit else "")
