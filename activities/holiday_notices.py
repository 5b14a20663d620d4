"""Where official holiday notices live: one TOML file per year in a directory.

The directory is `$HOLIDAY_NOTICES_DIR`, or `<repository>/.data/holiday-notices/`.
The worker reads it once, when it builds its calendar (`activities.build_desks`);
`petition holidays load` writes it. A file that does not parse stops the worker with
the file's name and the field, rather than letting it count deadlines without it.
See docs/holidays.md.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from domain.holiday_notice import HolidayNotice, NoticeError, parse_notice

ENVIRONMENT_VARIABLE = "HOLIDAY_NOTICES_DIR"
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / ".data" / "holiday-notices"

log = logging.getLogger(__name__)


class NoticeFileError(ValueError):
    """A notice file, or the notices directory, that cannot be used; one line."""


def notices_directory() -> Path:
    """`$HOLIDAY_NOTICES_DIR` if set, else `.data/holiday-notices/` in the repository."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return Path(configured).expanduser() if configured else DEFAULT_DIRECTORY


def read_notice_file(path: Path) -> HolidayNotice:
    """One notice file, checked; problems name the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NoticeFileError(f"{path}: cannot read the file: {err}") from None
    try:
        return parse_notice(text)
    except NoticeError as err:
        raise NoticeFileError(f"{path}: {err}") from None


@dataclass(frozen=True)
class NoticeFile:
    path: Path
    notice: HolidayNotice


def notice_files(directory: Path | None = None) -> list[NoticeFile]:
    """Every notice in the directory (none if it does not exist), by year.

    Every `*.toml` file must be a valid notice, and no two may be for the same year.
    """
    directory = notices_directory() if directory is None else directory
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise NoticeFileError(f"{directory}: not a directory (set {ENVIRONMENT_VARIABLE})")
    found: dict[int, NoticeFile] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name.startswith("."):  # an unfinished write of `petition holidays load`
            continue
        notice = read_notice_file(path)
        other = found.setdefault(notice.year, NoticeFile(path, notice))
        if other.path != path:
            raise NoticeFileError(f"{path}: a second notice for {notice.year}, "
                                  f"after {other.path.name}; keep one file per year")
    return [found[year] for year in sorted(found)]


def load_notices(directory: Path | None = None) -> list[HolidayNotice]:
    """The notices for `WorkingCalendar(notices=...)`; a bad file raises `NoticeFileError`."""
    notices = [f.notice for f in notice_files(directory)]
    if notices:
        log.info("holiday notices: %s", "; ".join(n.summary() for n in notices))
    return notices


@dataclass(frozen=True)
class Installed:
    notice: HolidayNotice
    path: Path
    replaced: HolidayNotice | None  # the notice it replaced, if any
    unchanged: bool  # the same notice was already there; nothing written


def install_notice(file: Path, directory: Path | None = None, *,
                   replace: bool = False) -> Installed:
    """Check `file` and copy it to `<directory>/<year>.toml`, as it is (comments kept).

    Refuses a notice for a year that already has a different one unless `replace`, and
    the example file (docs/holiday-notices/), whose `source` says EXAMPLE.
    """
    directory = notices_directory() if directory is None else directory
    notice = read_notice_file(file)
    if "EXAMPLE" in notice.source:
        raise NoticeFileError(f"{file}: source: {notice.source!r} marks the example file, "
                              "not an official notice; enter the published notice's dates "
                              "and reference (docs/holidays.md)")
    existing = next((f for f in notice_files(directory) if f.notice.year == notice.year), None)
    if existing is not None and existing.notice == notice:
        return Installed(notice, existing.path, None, unchanged=True)
    if existing is not None and not replace:
        raise NoticeFileError(
            f"{file}: {existing.path} already holds a different notice for {notice.year} "
            f"({existing.notice.source}); use --replace to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{notice.year}.toml"
    _write_atomically(target, file.read_bytes())
    if existing is not None and existing.path != target:
        existing.path.unlink()
    return Installed(notice, target, existing.notice if existing else None, unchanged=False)


def _write_atomically(target: Path, data: bytes) -> None:
    # A hidden temporary file in the same directory, renamed over the target: a worker
    # starting meanwhile reads the old notice or the new one, never half of one.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(name, 0o644)  # mkstemp's 0600 would hide it from a worker of another user
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
