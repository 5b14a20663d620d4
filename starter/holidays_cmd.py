"""`petition holidays`: load the State Council's holiday notice for a year, list coverage.

See docs/holidays.md. The notices directory is `$HOLIDAY_NOTICES_DIR`, or
`.data/holiday-notices/` in the repository.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import click

from activities.holiday_notices import (
    ENVIRONMENT_VARIABLE,
    NoticeFileError,
    install_notice,
    notice_files,
    notices_directory,
)
from domain.calendar import library_has_schedule, library_source
from starter.errors import fail as _fail

__all__ = ["holidays_cmd"]

_LIBRARY_FIRST_YEAR = 1950  # the first year `holidays` has any Chinese data for
_YEARS_AHEAD = 2  # `list` shows this year to this many years on, at least


@click.group("holidays")
def holidays_cmd() -> None:
    """Official holiday notices (国务院办公厅节假日安排通知) for years `holidays` lacks."""


@holidays_cmd.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True,
              help="replace a different notice already loaded for the same year")
def load_cmd(file: Path, replace: bool) -> None:
    """Check FILE (a notice in TOML) and copy it into the notices directory."""
    try:
        done = install_notice(file, replace=replace)
    except NoticeFileError as err:
        _fail(str(err))
    if done.unchanged:
        click.echo(f"already loaded, unchanged: {done.notice.summary()} ({done.path})")
        return
    click.echo(f"loaded {done.notice.summary()}")
    click.echo(f"  into {done.path}")
    if done.replaced is not None:
        click.echo(f"  replacing {done.replaced.source} (published "
                   f"{done.replaced.published.isoformat()})")
    if library_has_schedule(done.notice.year):
        click.echo(f"  note: {library_source()} has a schedule for {done.notice.year} too; "
                   "the notice is used instead")
    click.echo("Restart the worker to count with it. Cases that already froze a calendar "
               f"covering {done.notice.year} keep theirs (docs/holidays.md).")


@holidays_cmd.command("list")
def list_cmd() -> None:
    """The years covered by loaded notices and by the `holidays` library."""
    directory = notices_directory()
    try:
        files = notice_files(directory)
    except NoticeFileError as err:
        _fail(str(err))
    this_year = date.today().year
    library = [y for y in range(_LIBRARY_FIRST_YEAR, this_year + 10) if library_has_schedule(y)]
    click.echo(f"library: {library_source()} has State Council schedules for "
               f"{_ranges(library) or 'no year'}")
    configured = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    click.echo(f"notices: {directory}" + (f" (from ${ENVIRONMENT_VARIABLE})" if configured else ""))
    for f in files:
        click.echo(f"  {f.notice.summary()} [{f.path.name}]")
    if not files:
        click.echo("  none loaded")
    noticed = {f.notice.year: f.notice for f in files}
    first, last = min([this_year - 1, *noticed]), max([this_year + _YEARS_AHEAD, *noticed])
    click.echo("year  counted with")
    for year in range(first, last + 1):
        if year in noticed:
            what = f"notice {noticed[year].source}"
            if year in library:
                what += f" (instead of {library_source()})"
        elif year in library:
            what = library_source()
        else:
            what = ("NO SCHEDULE: statutory holidays without make-up working days; "
                    "load the notice once it is published")
        click.echo(f"{year}  {what}")


def _ranges(years: list[int]) -> str:
    """`2001-2026` for consecutive years, comma-separated runs otherwise."""
    runs: list[list[int]] = []
    for year in years:
        if runs and year == runs[-1][1] + 1:
            runs[-1][1] = year
        else:
            runs.append([year, year])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)

