"""What the past is worth: recent cases weigh more, and labels nobody has used for a long time are retired.

Hotline topics move with the seasons and agencies are created, renamed and merged.  Two settings of the
training config (``TrainingConfig.recency``; ``hotline train --half-life 180d --retire-after 365d``), both off by
default, both measured from the newest case in the training data (not the wall clock, so a retraining is
reproducible):

- **half-life**: a case ``h`` older than the newest one counts half as much, ``2h`` a quarter, ... (sample
  weights through every head: ``classifier.model.TargetHead.fit``).
- **retire after**: a label of a target (by default the agency) that no case has named for that long is taken
  out of the label set: its cases keep their other targets' labels, and the report says which labels went and
  when each was last seen.  A merged or renamed agency stops being predicted once its old name has aged out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from classifier.errors import ConfigError

__all__ = ["parse_duration", "parse_retire_after", "half_life_weights", "labels_to_retire", "retire", "describe",
           "format_days"]

_UNITS = {"d": 1.0, "w": 7.0, "m": 30.0, "y": 365.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*$", re.IGNORECASE)


def parse_duration(raw: str, what: str = "duration") -> float:
    """``"180d"``, ``"26w"``, ``"6m"`` (30 days), ``"1y"`` (365 days) or a bare number of days -> days (> 0)."""
    match = _DURATION.match(str(raw))
    if not match:
        raise ConfigError(f"{what}: expected a duration such as 180d, 26w, 6m or 1y, got {raw!r}")
    days = float(match.group(1)) * _UNITS[(match.group(2) or "d").lower()]
    if days <= 0:
        raise ConfigError(f"{what}: the duration must be longer than 0 days, got {raw!r}")
    return days


def parse_retire_after(specs: list[str] | None, default_target: str = "agency") -> dict[str, float]:
    """``["365d", "category=730d"]`` -> ``{"agency": 365.0, "category": 730.0}`` (a bare duration is the
    agency's)."""
    out: dict[str, float] = {}
    for spec in specs or []:
        target, sep, duration = str(spec).rpartition("=")
        target = target.strip() if sep else default_target
        if not target:
            raise ConfigError(f"--retire-after expects [TARGET=]DURATION, e.g. 365d or agency=365d; got {spec!r}")
        out[target] = parse_duration(duration, f"--retire-after {target}")
    return out


def format_days(days: float) -> str:
    return f"{days:g}d"


def half_life_weights(times: np.ndarray, half_life_days: float) -> np.ndarray:
    """Each case's weight ``0.5 ** (age / half_life)``, its age counted from the newest case (which weighs 1)."""
    if half_life_days <= 0:
        raise ConfigError(f"the half-life must be longer than 0 days, got {half_life_days}")
    t = np.asarray(times, dtype="datetime64[ns]")
    age_days = (t.max() - t) / np.timedelta64(1, "D")
    return np.power(0.5, age_days.astype(np.float64) / half_life_days)


def labels_to_retire(labels: pd.Series, times: np.ndarray, after_days: float) -> dict[str, str]:
    """The labels whose newest case is more than ``after_days`` older than the newest case of all, each with the
    date it was last seen (``YYYY-MM-DD``)."""
    t = pd.Series(np.asarray(times, dtype="datetime64[ns]"), index=labels.index)
    has = labels.notna()
    if not has.any():
        return {}
    newest = t.max()
    last_seen = t[has].groupby(labels[has]).max()
    cutoff = newest - pd.Timedelta(days=after_days)
    old = last_seen[last_seen < cutoff].sort_values()
    return {str(label): str(when)[:10] for label, when in old.items()}


def retire(data: pd.DataFrame, targets: Mapping[str, str], times: pd.Series, retire_after: Mapping[str, float]
           ) -> tuple[pd.DataFrame, dict[str, dict[str, str]], int]:
    """A copy of ``data`` (before validation) with the retired labels of each target in ``retire_after`` blanked
    (``targets``: target name -> column; ``times``: each row's time, NaT where unknown); what was retired; and
    how many rows were left without any label (validation then drops them)."""
    unknown = sorted(set(retire_after) - set(targets))
    if unknown:
        raise ConfigError(f"--retire-after names targets {unknown} the training data does not have; its targets "
                          f"are {list(targets)}")
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    t = pd.Series(times.to_numpy(), index=data.index)
    dated = t.notna().to_numpy()
    if not dated.any():
        raise ConfigError("--retire-after needs each case's date and none of the rows has one")
    out = data.copy()
    out.attrs = dict(data.attrs)
    columns = [targets[n] for n in targets]
    had = out[columns].map(lambda v: not _blank(v)).any(axis=1)
    retired: dict[str, dict[str, str]] = {}
    for target, days in retire_after.items():
        col = targets[target]
        labels = out[col].map(lambda v: None if _blank(v) else str(v).strip())
        gone = labels_to_retire(labels[dated], t[dated].to_numpy(), days)
        if gone:
            retired[target] = gone
            out.loc[labels.isin(list(gone)), col] = None
    left = had & ~out[columns].map(lambda v: not _blank(v)).any(axis=1)
    return out, retired, int(left.sum())


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or not str(v).strip()


def describe(retired: Mapping[str, Mapping[str, str]], retire_after: Mapping[str, float],
             rows_left: int = 0) -> list[str]:
    """Report lines: which labels were retired and when each was last seen."""
    lines = []
    for target, labels in retired.items():
        shown = ", ".join(f"{label} (last {when})" for label, when in list(labels.items())[:20])
        more = f" and {len(labels) - 20} more" if len(labels) > 20 else ""
        lines.append(f"retired {len(labels)} {target} label(s) no case has named for "
                     f"{format_days(retire_after[target])}: {shown}{more}")
    if rows_left:
        lines.append(f"{rows_left} rows had only a retired label (among the rows dropped for a missing label)")
    return lines
