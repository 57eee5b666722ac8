"""Cron expressions: checked before they reach Vertex or KFP, and evaluated by the local scheduler.

Vertex AI takes 5 fields (minute hour day-of-month month day-of-week) with an optional
``TZ=<IANA zone>`` or ``CRON_TZ=<zone>`` prefix; Kubeflow Pipelines (robfig/cron) takes 6 fields,
seconds first. A wrong field count is the usual mistake, so the errors say which form is expected.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

# (name, lowest, highest) per field, in order.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_SECONDS = ("second", 0, 59)
_TZ_PREFIX = re.compile(r"^(?:CRON_)?TZ=(\S+)\s+(.*)$")


class CronError(ValueError):
    """A cron expression does not parse; the message names the field and the expected form."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", part)
        if not match:
            raise CronError(
                f"cron {name} field {text!r}: use numbers, '*', ranges a-b, steps /n and lists a,b"
            )
        start_text, end_text, step_text = match.groups()
        start, end = (low, high) if start_text == "*" else (int(start_text), int(end_text or start_text))
        if step_text and start_text != "*" and end_text is None:
            end = high  # "5/15" means from 5 to the end in steps of 15
        step = int(step_text or 1)
        if not low <= start <= end <= high or step < 1:
            raise CronError(f"cron {name} field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed 5-field cron expression in a time zone."""

    expression: str
    timezone: str | None
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def matches(self, moment: dt.datetime) -> bool:
        """True if the schedule fires in the minute of ``moment`` (naive = local time)."""
        if self.timezone and moment.tzinfo is not None:
            moment = moment.astimezone(zoneinfo.ZoneInfo(self.timezone))
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        # When both day fields are restricted, classic cron fires when either matches.
        restricted_both = not (self.any_day or self.any_weekday)
        date_ok = (day_ok or weekday_ok) if restricted_both else (day_ok and weekday_ok)
        return (
            date_ok
            and moment.month in self.months
            and moment.hour in self.hours
            and moment.minute in self.minutes
        )

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first whole minute after ``moment`` at which the schedule fires (searches one year)."""
        candidate = moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches(candidate):
                return candidate
            candidate += dt.timedelta(minutes=1)
        raise CronError(f"cron {self.expression!r} never fires")


def parse_vertex_cron(expression: str) -> CronSchedule:
    """Parse Vertex's form: ``[TZ=Zone ]minute hour day month weekday``."""
    text = expression.strip()
    timezone = None
    prefix = _TZ_PREFIX.match(text)
    if prefix:
        timezone, text = prefix.groups()
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise CronError(
                f"cron time zone {timezone!r} is not an IANA zone (e.g. Europe/Berlin)"
            ) from error
    fields = text.split()
    if len(fields) != 5:
        hint = " (Kubeflow's 6-field form with seconds first is for --target kfp)" if len(fields) == 6 else ""
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; Vertex needs 5: minute hour day month weekday, "
            f"optionally prefixed by TZ=<zone>{hint}"
        )
    parsed = [_parse_field(value, *spec) for value, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in parsed[4])
    return CronSchedule(
        expression=expression,
        timezone=timezone,
        minutes=parsed[0],
        hours=parsed[1],
        days=parsed[2],
        months=parsed[3],
        weekdays=weekdays,
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )


def check_kfp_cron(expression: str) -> str:
    """Check Kubeflow Pipelines' 6-field form (second minute hour day month weekday); return it."""
    fields = expression.split()
    if expression.strip().startswith(("TZ=", "CRON_TZ=")):
        raise CronError("Kubeflow Pipelines cron has no TZ= prefix; it runs in the cluster's time zone")
    if len(fields) != 6:
        hint = f" e.g. '0 {expression.strip()}'" if len(fields) == 5 else ""
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; Kubeflow Pipelines needs 6, seconds first{hint}"
        )
    for value, spec in zip(fields, (_SECONDS, *_FIELDS), strict=True):
        _parse_field(value, *spec)
    return expression.strip()
