"""Deadline profiles: every period, reminder and escalation delay as data.

A profile is one TOML file under `domain/profiles/`. Workflow code never holds
a period of its own; it asks the case's profile for the absolute deadline when
a clock starts and stores that instant (see DOMAIN.md, "Deadlines").
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.calendar import (
    EXACT_UNITS,
    PeriodUnit,
    WorkingCalendar,
    deadline_for,
    extend_deadline,
    subtract,
)
from domain.models import ClockName

__all__ = [
    "AssistancePolicy",
    "ClockKind",
    "ClockPolicy",
    "DeadlineProfile",
    "ExtensionPolicy",
    "Period",
    "PeriodUnit",
    "ProfileError",
    "available_profiles",
    "load_profile",
    "load_profile_file",
]

_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Yuan = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]

# The kind of each clock is fixed by law, not by a profile: a petitioner's
# right to ask for review lapses, it is never "overdue".
WINDOW_CLOCKS = frozenset(
    {ClockName.REVIEW_REQUEST, ClockName.RE_REVIEW_REQUEST, ClockName.TRANSFER_OBJECTION}
)

# Rough length of one unit in hours, only to catch a reminder longer than its period.
_NOMINAL_HOURS = {
    PeriodUnit.HOURS: 1.0,
    PeriodUnit.MINUTES: 1 / 60,
    PeriodUnit.SECONDS: 1 / 3600,
    PeriodUnit.DAYS: 24.0,
    PeriodUnit.WORKING_DAYS: 24.0 * 7 / 5,
    PeriodUnit.MONTHS: 24.0 * 30,
}


class ProfileError(ValueError):
    """A profile that cannot be found or read (bad name, missing file, bad TOML)."""


class _Strict(BaseModel):
    # Frozen because loaded profiles are cached and shared by every caller.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(_Strict):
    amount: int = Field(gt=0, le=100_000)
    unit: PeriodUnit

    def __str__(self) -> str:
        noun = {
            PeriodUnit.DAYS: "day",
            PeriodUnit.WORKING_DAYS: "working day",
            PeriodUnit.MONTHS: "month",
            PeriodUnit.HOURS: "hour",
            PeriodUnit.MINUTES: "minute",
            PeriodUnit.SECONDS: "second",
        }[self.unit]
        return f"{self.amount} {noun}{'' if self.amount == 1 else 's'}"

    def nominal_hours(self) -> float:
        return self.amount * _NOMINAL_HOURS[self.unit]


class ClockKind(StrEnum):
    DEADLINE = "deadline"  # an obligation of a unit: reminder, overdue, escalation
    WINDOW = "window"  # a right of the petitioner or a unit that simply lapses


def _escalation() -> Any:
    # Validated even when absent, so a missing reminder on a deadline clock is
    # reported at its own field.
    return Field(default=None, validate_default=True)


class ClockPolicy(_Strict):
    kind: ClockKind
    period: Period
    article: Text
    description: Text
    roll_to_working_day: bool = True
    reminder_before: Period | None = _escalation()
    level2_after: Period | None = _escalation()
    repeat_every: Period | None = _escalation()

    @field_validator("reminder_before", "level2_after", "repeat_every")
    @classmethod
    def _fits_kind(cls, value: Period | None, info: ValidationInfo) -> Period | None:
        kind = info.data.get("kind")
        if kind is ClockKind.WINDOW and value is not None:
            raise ValueError("not allowed on a window clock: a window simply lapses")
        required = info.field_name != "repeat_every"
        if kind is ClockKind.DEADLINE and value is None and required:
            raise ValueError("required on a deadline clock")
        return value

    @model_validator(mode="after")
    def _reminder_within_period(self) -> ClockPolicy:
        reminder = self.reminder_before
        if reminder is not None and reminder.nominal_hours() >= self.period.nominal_hours():
            raise ValueError(
                f"reminder_before ({reminder}) must be shorter than the period ({self.period})"
            )
        return self


class ExtensionPolicy(_Strict):
    max_period: Period
    max_times: int = Field(default=1, ge=0, le=10)
    article: Text


class AssistancePolicy(_Strict):
    # Configuration: the previous year's provincial average monthly wage, to be
    # replaced with the figure the statistics bureau publishes each year.
    average_monthly_wage_yuan: Yuan
    cap_multiplier: int = Field(default=36, gt=0, le=120)
    leader_threshold_yuan: Yuan  # above this a leader, not the unit head, decides
    article: Text

    @property
    def cap_yuan(self) -> Decimal:
        return self.average_monthly_wage_yuan * self.cap_multiplier


class DeadlineProfile(_Strict):
    name: Annotated[str, StringConstraints(pattern=_PROFILE_NAME.pattern)]
    title: Text
    description: Text
    clocks: dict[ClockName, ClockPolicy]
    extension: ExtensionPolicy
    assistance: AssistancePolicy
    review_closes_as_resolved: bool = True

    @model_validator(mode="after")
    def _kinds_match_the_law(self) -> DeadlineProfile:
        for name, clock in self.clocks.items():
            expected = ClockKind.WINDOW if name in WINDOW_CLOCKS else ClockKind.DEADLINE
            if clock.kind is not expected:
                raise ValueError(f"clocks.{name}.kind must be {expected.value!r}")
        return self

    def clock(self, name: ClockName) -> ClockPolicy | None:
        return self.clocks.get(name)

    @property
    def counts_on_calendar(self) -> bool:
        """Whether any period is counted in days (so a case needs a working-day calendar);
        profiles in seconds (demo, benchmarks) count on the clock alone."""
        periods = [self.extension.max_period]
        for c in self.clocks.values():
            periods += [p for p in (c.period, c.reminder_before, c.level2_after, c.repeat_every)
                        if p is not None]
        return any(p.unit not in EXACT_UNITS for p in periods)

    def deadline(
        self, clock: ClockName, start: datetime, calendar: WorkingCalendar
    ) -> datetime | None:
        """When `clock`, started at `start`, expires; None if this profile lacks it."""
        policy = self.clocks.get(clock)
        if policy is None:
            return None
        return deadline_for(
            start, policy.period, calendar=calendar, roll_to_working_day=policy.roll_to_working_day
        )

    def reminder_at(
        self, clock: ClockName, due: datetime, calendar: WorkingCalendar
    ) -> datetime | None:
        """When to remind the handler of a deadline `due`; None for windows."""
        policy = self.clocks.get(clock)
        if policy is None or policy.reminder_before is None:
            return None
        return subtract(due, policy.reminder_before, calendar=calendar)

    def level2_at(
        self, clock: ClockName, due: datetime, calendar: WorkingCalendar
    ) -> datetime | None:
        """When a case still overdue on `clock` goes to the superior bureau (督办)."""
        policy = self.clocks.get(clock)
        if policy is None or policy.level2_after is None:
            return None
        return _run_on(due, policy.level2_after, policy, calendar)

    def next_repeat(
        self, clock: ClockName, previous_due: datetime, calendar: WorkingCalendar
    ) -> datetime | None:
        """The next due time of a repeating clock (monthly progress reply), else None."""
        policy = self.clocks.get(clock)
        if policy is None or policy.repeat_every is None:
            return None
        return _run_on(previous_due, policy.repeat_every, policy, calendar)

    def extended_deadline(
        self, clock: ClockName, due: datetime, requested: Period, calendar: WorkingCalendar
    ) -> datetime:
        """`due` extended by `requested`; ValueError if it exceeds the profile's maximum."""
        policy = self.clocks.get(clock)
        if policy is None:
            raise ValueError(f"profile {self.name!r} has no {clock.value!r} clock")
        extended = _run_on(due, requested, policy, calendar)
        if extended > _run_on(due, self.extension.max_period, policy, calendar):
            raise ValueError(
                f"an extension of {requested} exceeds the maximum of "
                f"{self.extension.max_period} ({self.extension.article})"
            )
        return extended


def _run_on(
    due: datetime, period: Period, policy: ClockPolicy, calendar: WorkingCalendar
) -> datetime:
    return extend_deadline(
        due, period, calendar=calendar, roll_to_working_day=policy.roll_to_working_day
    )


# --------------------------------------------------------------------------- loading


def _profiles_dir() -> Traversable:
    return resources.files("domain").joinpath("profiles")


def available_profiles() -> list[str]:
    names = (entry.name.removesuffix(".toml") for entry in _profiles_dir().iterdir())
    return sorted(n for n in names if _PROFILE_NAME.match(n))


@cache
def load_profile(name: str) -> DeadlineProfile:
    """The packaged profile `name` (e.g. "national"), loaded once and cached."""
    if not _PROFILE_NAME.match(name):
        raise ProfileError(f"invalid profile name {name!r}: use lower-case letters, digits, _")
    entry = _profiles_dir().joinpath(f"{name}.toml")
    if not entry.is_file():
        raise ProfileError(
            f"no deadline profile {name!r}; available: {', '.join(available_profiles())}"
        )
    profile = _parse(entry.read_text(encoding="utf-8"), source=f"domain/profiles/{name}.toml")
    if profile.name != name:
        raise ProfileError(f"domain/profiles/{name}.toml declares name = {profile.name!r}")
    return profile


@cache
def load_profile_file(path: str | Path) -> DeadlineProfile:
    """A profile from any TOML file (tests, a deployment's own profile), cached by path."""
    path = Path(path)
    return _parse(path.read_text(encoding="utf-8"), source=str(path))


def _parse(text: str, *, source: str) -> DeadlineProfile:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{source}: not valid TOML: {err}") from err
    try:
        return DeadlineProfile.model_validate(data)
    except ValidationError as err:
        # Same errors, but titled with the file so the message says where to look.
        raise ValidationError.from_exception_data(
            title=source,
            line_errors=err.errors(include_url=False),  # type: ignore[arg-type]
        ) from err
