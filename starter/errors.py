"""One-line error messages for people at a terminal."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

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


class JsonProblem(ValueError):
    """Text that is not one acceptable JSON object; the message fits after a source name."""


def load_json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object, turning every way hostile text can fail into one line."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise JsonProblem(f"not valid JSON (line {err.lineno}: {err.msg})") from None
    except (RecursionError, ValueError) as err:  # nested too deep, a 5,000-digit number
        raise JsonProblem(f"not acceptable JSON ({type(err).__name__}: "
                          f"{one_line(str(err), 120)})") from None
    if not isinstance(raw, dict):
        raise JsonProblem("expected a JSON object")
    return raw


def fail(message: str) -> NoReturn:
    """A command's refusal: one line on stderr, exit status 2, nothing changed."""
    import click

    click.echo(f"error: {message}", err=True)
    sys.exit(2)
