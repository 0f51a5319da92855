"""Dates, durations and weeks as the live-loop commands take them (``hotline feedback``, ``hotline decisions``,
``hotline report --live``).

A date or time without an offset is read in a time zone: the one given (``--timezone Asia/Shanghai``) or, by
default, the machine's own, as ``git log --since`` and ``journalctl --since`` read theirs.  The decision log
keeps every time in UTC; the commands print UTC with its offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from classifier.errors import ConfigError

__all__ = ["parse_duration", "parse_when", "time_zone", "localize", "Week", "weeks", "to_utc_series", "DURATION_UNITS"]

DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """``180d``, ``12h``, ``4w``: a whole number of hours, days or weeks, more than zero."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"a duration is a whole number above 0 followed by h (hours), d (days) or w (weeks), "
                          f"e.g. 180d, 12h, 4w; got {text!r}")
    return int(match.group(1)) * DURATION_UNITS[match.group(2).lower()]


def time_zone(name: str | None) -> tzinfo | None:
    """The zone ``name`` names (``Asia/Shanghai``, ``UTC``, ``+08:00``); None: the machine's local time."""
    if name is None or name == "local":
        return None
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name.strip())
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        from datetime import timezone

        return timezone(sign * timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3))))
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai or UTC, or an "
                          "offset such as +08:00") from None


def localize(value: datetime, tz: tzinfo | None) -> datetime:
    """An aware datetime in UTC: ``value`` as it is when it carries an offset, else read in ``tz`` (None: the
    machine's local time, with its daylight-saving rules)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz) if tz is not None else value.astimezone()
    return value.astimezone(UTC)


def parse_when(text: str, tz: tzinfo | None, *, end_of_day: bool = False, what: str = "date") -> datetime:
    """``2026-11-01``, ``2026-11-01 08:30``, ``2026-11-01T08:30:00+08:00`` -> an aware UTC datetime.  A bare
    date is its day's start, or with ``end_of_day`` the next day's start (``--until 2026-11-30`` includes the
    30th)."""
    raw = str(text).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            day = date.fromisoformat(raw)
            start = datetime.combine(day + timedelta(days=1) if end_of_day else day, time())
            return localize(start, tz)
        return localize(datetime.fromisoformat(raw), tz)
    except ValueError:
        raise ConfigError(f"{what} must be a date (2026-11-01) or a date and time (2026-11-01T08:30, "
                          f"2026-11-01T08:30+08:00), got {text!r}") from None


@dataclass(frozen=True)
class Week:
    """A calendar week (Monday 00:00 in the report's time zone) cut to the report's window."""

    monday: date
    start: datetime  # UTC, inclusive
    end: datetime    # UTC, exclusive

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)


def weeks(since: datetime, until: datetime, tz: tzinfo | None) -> list[Week]:
    """The calendar weeks that meet ``[since, until)``, each cut to it (the first and last may be partial)."""
    if until <= since:
        return []
    local_since = since.astimezone(tz) if tz is not None else since.astimezone()
    monday = local_since.date() - timedelta(days=local_since.weekday())
    out = []
    while True:
        start = localize(datetime.combine(monday, time()), tz)
        end = localize(datetime.combine(monday + timedelta(days=7), time()), tz)
        if start >= until:
            break
        out.append(Week(monday=monday, start=max(start, since), end=min(end, until)))
        monday += timedelta(days=7)
    return out


def to_utc_series(values: pd.Series, tz: tzinfo | None) -> tuple[pd.Series, pd.Series]:
    """Parse a column of times (strings or datetimes) one by one: (aware UTC datetimes or NaT, and a mask of the
    non-blank cells that are not a time)."""
    parsed: list[datetime | None] = []
    bad: list[bool] = []
    for v in values.tolist():
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
            parsed.append(None)
            bad.append(False)
            continue
        try:
            stamp = pd.Timestamp(v.strip() if isinstance(v, str) else v)
            if stamp is pd.NaT:
                raise ValueError
            parsed.append(localize(stamp.to_pydatetime(), tz))
            bad.append(False)
        except (ValueError, TypeError, OverflowError):
            parsed.append(None)
            bad.append(True)
    return pd.Series(parsed, index=values.index, dtype=object), pd.Series(bad, index=values.index)
