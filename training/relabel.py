"""Renamed and merged labels: every case of an old name learns the new one.

Agencies are renamed (黄岛区政府 became 西海岸新区政府) and merged.  Until the corrections under the new name
outnumber the export's cases under the old one, a model trained from both keeps routing to the old name: in the
Qingdao replay the renamed agency was right on 5 of its first 17 cases (BENCHMARKS.md, "The live loop").  A
relabeling tells training that the old name *is* the new one:

- ``TrainingConfig.relabel``: per target, ``{old: new}``; several old names may map to one new name (a merge);
  chains resolve (``A -> B``, ``B -> C`` is ``A -> C``), a cycle is an error.  Saved in the model's config, so a
  retraining repeats it.
- ``hotline train --relabel 黄岛区政府=西海岸新区政府`` (the agency by default; ``category:OLD=NEW`` for another
  target; repeatable) and ``--relabel-file renames.csv`` (columns ``target,old,new``: what ``hotline feedback
  renames`` writes from the decision log's corrections, ``live.renames``).

It applies to the export and the corrections alike, before validation; the validation report says how many cases
each mapping moved.  A split (one old name becoming two) is not a relabeling: leave it to the corrections.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from classifier.errors import ConfigError, DataFormatError

__all__ = ["parse_relabel", "read_relabel_file", "resolve", "relabel", "describe", "RELABEL_COLUMNS"]

RELABEL_COLUMNS = ("target", "old", "new")


def parse_relabel(specs: list[str] | None, default_target: str = "agency") -> dict[str, dict[str, str]]:
    """``["黄岛区政府=西海岸新区政府", "category:旧=新"]`` -> ``{"agency": {...}, "category": {...}}``."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs or []:
        head, sep, new = str(spec).partition("=")
        target, colon, old = head.partition(":")
        if not colon:
            target, old = default_target, head
        target, old, new = target.strip(), old.strip(), new.strip()
        if not sep or not target or not old or not new:
            raise ConfigError(f"--relabel expects [TARGET:]OLD=NEW, e.g. 黄岛区政府=西海岸新区政府 or "
                              f"category:旧类=新类; got {spec!r}")
        _add(out, target, old, new, f"--relabel {spec!r}")
    return out


def read_relabel_file(path: str | Path, default_target: str = "agency") -> dict[str, dict[str, str]]:
    """A CSV (UTF-8, with or without BOM, or GBK) or XLSX with columns ``old,new`` and optionally ``target``."""
    from .data import read_table  # CSV in UTF-8 or GBK, detected; XLSX; the project's one reader

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"relabel file not found: {path}")
    try:
        frame = read_table(path).fillna("")
    except DataFormatError as exc:
        raise ConfigError(f"relabel file {path}: {exc}") from None
    missing = [c for c in ("old", "new") if c not in frame.columns]
    if missing:
        raise ConfigError(f"relabel file {path} needs the columns target (optional), old, new; missing {missing}; "
                          f"its columns are {list(frame.columns)}")
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(frame.to_dict("records"), start=2):
        target = str(row.get("target") or default_target).strip()
        old, new = str(row["old"]).strip(), str(row["new"]).strip()
        if not old or not new:
            raise ConfigError(f"relabel file {path}, line {i}: old and new must both be given, got {old!r} -> "
                              f"{new!r}")
        _add(out, target, old, new, f"relabel file {path}, line {i}")
    return out


def _add(out: dict[str, dict[str, str]], target: str, old: str, new: str, where: str) -> None:
    if old == new:
        raise ConfigError(f"{where}: a label cannot be relabeled as itself ({old!r})")
    known = out.setdefault(target, {})
    if known.get(old, new) != new:
        raise ConfigError(f"{where}: {target} {old!r} is relabeled twice, as {known[old]!r} and as {new!r}; "
                          "a split is not a relabeling")
    known[old] = new


def resolve(mapping: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Each old name to its final name (chains followed); a cycle or a self-mapping is a ``ConfigError``."""
    out: dict[str, dict[str, str]] = {}
    for target, pairs in mapping.items():
        final: dict[str, str] = {}
        for old in pairs:
            seen = [old]
            new = pairs[old]
            while new in pairs:
                if new in seen:
                    raise ConfigError(f"relabel of {target}: the mapping goes round in a circle: "
                                      + " -> ".join([*seen, new]))
                seen.append(new)
                new = pairs[new]
            if new == old:
                raise ConfigError(f"relabel of {target}: {old!r} maps to itself")
            final[str(old)] = str(new)
        if final:
            out[str(target)] = final
    return out


def relabel(data: pd.DataFrame, targets: Mapping[str, str], mapping: Mapping[str, Mapping[str, str]]
            ) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, Any]]]]:
    """A copy of ``data`` (before validation) with each target's old labels replaced by their new ones
    (``targets``: target name -> column), and per target ``{old: {"new": ..., "cases": n}}`` for the report."""
    unknown = sorted(set(mapping) - set(targets))
    if unknown:
        raise ConfigError(f"--relabel names targets {unknown} the training data does not have; its targets are "
                          f"{list(targets)}")
    final = resolve(mapping)
    out = data.copy()
    out.attrs = dict(data.attrs)
    moved: dict[str, dict[str, dict[str, Any]]] = {}
    for target, pairs in final.items():
        col = targets[target]
        labels = out[col].map(lambda v: v.strip() if isinstance(v, str) else v)
        hit = labels.isin(list(pairs))
        counts = labels[hit].value_counts()
        moved[target] = {old: {"new": new, "cases": int(counts.get(old, 0))} for old, new in pairs.items()}
        if hit.any():
            out.loc[hit, col] = labels[hit].map(pairs)
    return out, moved


def describe(moved: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Report lines: what each relabeling moved (a mapping that matched no case is said too: a typo?)."""
    lines = []
    for target, pairs in moved.items():
        for old, what in pairs.items():
            n = what["cases"]
            if n:
                lines.append(f"relabeled {n:,} {target} case{'s' if n != 1 else ''} of {old} as {what['new']}")
            else:
                lines.append(f"relabel {target} {old} -> {what['new']}: no case has the label {old} (check the "
                             "spelling)")
    return lines
