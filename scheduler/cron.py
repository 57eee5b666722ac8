"""Cron expressions: checked before they reach Vertex or KFP, and evaluated by the local scheduler.

Parsing and "when does it fire next" are croniter's (ranges, steps, lists, names such as ``MON-FRI``
and ``JAN``, ``@daily`` and the other nicknames, ``?`` in the day fields, leap days). What this module
adds is the two forms the project sends, with errors that say which one is expected:

- Vertex AI: 5 fields (minute hour day-of-month month day-of-week), optionally prefixed by
  ``TZ=<IANA zone>`` or ``CRON_TZ=<zone>``; without a prefix the local scheduler uses this machine's
  time zone, so ``0 3 * * *`` stays at 03:00 wall-clock time across a daylight-saving change;
- Kubeflow Pipelines (robfig/cron): 6 fields, seconds first, no time-zone prefix.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from dataclasses import dataclass

from croniter import CroniterBadDateError, CroniterError, croniter

from tfx_canary.errors import UsageError

_TZ_PREFIX = re.compile(r"^(?:CRON_)?TZ=(\S+)\s+(.*)$")
_LOCALTIME = "/etc/localtime"
# (name, lowest, highest) of the 5 fields, for messages that name the field a number is wrong in.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_SECONDS = ("second", 0, 59)


class CronError(UsageError, ValueError):
    """A cron expression does not parse or never fires; the message names the expected form."""


def local_zone() -> dt.tzinfo:
    """This machine's time zone with its daylight-saving rules ($TZ, else /etc/localtime, else UTC)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    if os.path.exists(_LOCALTIME):
        with open(_LOCALTIME, "rb") as handle:
            return zoneinfo.ZoneInfo.from_file(handle, key="localtime")
    return dt.timezone.utc


@dataclass(frozen=True)
class CronSchedule:
    """A checked 5-field cron expression and the time zone it fires in (None: this machine's)."""

    expression: str  # as given, prefix included
    fields: str  # without the prefix
    timezone: str | None

    @property
    def zone(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else local_zone()

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first time after ``moment`` at which the schedule fires, in the schedule's zone."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=local_zone())
        try:
            return croniter(self.fields, moment.astimezone(self.zone)).get_next(dt.datetime)
        except CroniterBadDateError:
            raise CronError(f"cron {self.expression!r} never fires (no such date)") from None

    def matches(self, moment: dt.datetime) -> bool:
        """True if the schedule fires in the minute of ``moment`` (naive = this machine's time)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=local_zone())
        return croniter.match(self.fields, moment.astimezone(self.zone).replace(second=0, microsecond=0))


def parse_vertex_cron(expression: str) -> CronSchedule:
    """Parse Vertex's form: ``[TZ=Zone ]minute hour day month weekday`` (or a nickname like ``@daily``)."""
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
    if not (len(fields) == 1 and fields[0].startswith("@")) and len(fields) != 5:
        hint = " (Kubeflow's 6-field form with seconds first is for --target kfp)" if len(fields) == 6 else ""
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; Vertex needs 5: minute hour day month weekday, "
            f"optionally prefixed by TZ=<zone>{hint}"
        )
    _check(text, expression, second_at_beginning=False)
    return CronSchedule(expression=expression, fields=text, timezone=timezone)


def check_kfp_cron(expression: str) -> str:
    """Check Kubeflow Pipelines' 6-field form (second minute hour day month weekday); return it."""
    text = expression.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise CronError("Kubeflow Pipelines cron has no TZ= prefix; it runs in the cluster's time zone")
    fields = text.split()
    if not (len(fields) == 1 and fields[0].startswith("@")) and len(fields) != 6:
        hint = f" e.g. '0 {text}'" if len(fields) == 5 else ""
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; Kubeflow Pipelines needs 6, seconds first{hint}"
        )
    _check(text, expression, second_at_beginning=len(fields) == 6)
    return text


def _check(fields: str, expression: str, second_at_beginning: bool) -> None:
    parts = fields.split()
    if len(parts) > 1:
        for text, (name, low, high) in zip(
            parts, (_SECONDS, *_FIELDS) if second_at_beginning else _FIELDS, strict=True
        ):
            for number in re.findall(r"(?<![/\w])\d+", text):  # not the step after '/'
                if not low <= int(number) <= high:
                    raise CronError(f"cron {name} field {text!r} is outside {low}-{high}")
    try:
        croniter(fields, dt.datetime(2000, 1, 1), second_at_beginning=second_at_beginning)
    except (CroniterError, ValueError, KeyError) as error:
        raise CronError(
            f"cron {expression!r}: {error}; use numbers, names (MON-FRI, JAN), '*', '?', ranges a-b, "
            "steps /n, lists a,b or a nickname such as @daily"
        ) from None
