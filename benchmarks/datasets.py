"""The real data sets of the benchmark, with the splits their publishers fixed.

They live in ``../shared/data`` beside the checkout and are never copied into the repository.  Each task is a
train split and an evaluation split of (texts, labels); the Qingdao work orders give two tasks (category, and
agency on the orders that were forwarded to one).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["Task", "DEFAULT_DATA", "load_tasks", "tasks_for_command", "TASK_NAMES"]

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASK_NAMES = ("tipdm", "thucnews", "qingdao-category", "qingdao-agency")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]

    @property
    def n_classes(self) -> int:
        return len(set(self.train_labels) | set(self.test_labels))


def _split(df: pd.DataFrame, label: str, train: str, test: str) -> tuple[list[str], list[str], list[str], list[str]]:
    df = df[df[label].notna() & df["text"].notna()]
    tr, te = df[df["split"] == train], df[df["split"] == test]
    return (tr["text"].astype(str).tolist(), tr[label].astype(str).tolist(),
            te["text"].astype(str).tolist(), te[label].astype(str).tolist())


def load_tasks(data: Path = DEFAULT_DATA, names: tuple[str, ...] = TASK_NAMES) -> tuple[list[Task], list[str]]:
    """The tasks whose files exist under ``data``, and a message for each one skipped."""
    tasks: list[Task] = []
    skipped: list[str] = []
    unknown = set(names) - set(TASK_NAMES)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {list(TASK_NAMES)}")
    files = {
        "tipdm": data / "tipdm2020" / "messages.csv",
        "thucnews": data / "thucnews" / "titles.csv",
        "qingdao-category": data / "qingdao12345" / "work_orders.csv",
        "qingdao-agency": data / "qingdao12345" / "work_orders.csv",
    }
    frames: dict[Path, pd.DataFrame] = {}
    for name in names:
        path = files[name]
        if not path.exists():
            skipped.append(f"{name}: {path} not found (the real data lives in ../shared/data beside the checkout)")
            continue
        if path not in frames:
            frames[path] = pd.read_csv(path)
        df = frames[path]
        if name == "tipdm":
            parts = _split(df, "label", "train", "dev")
            desc = "tipdm2020 messages, 7 categories, train -> dev"
        elif name == "thucnews":
            parts = _split(df, "label", "train", "test")
            desc = "THUCNews titles, 10 topics, train -> test"
        elif name == "qingdao-category":
            parts = _split(df, "category", "train", "test")
            desc = "Qingdao 12345 work orders, category, train -> test"
        else:
            parts = _split(df, "agency", "train", "test")
            desc = "Qingdao 12345 forwarded work orders, agency, train -> test"
        tasks.append(Task(name, desc, *parts))
    return tasks, skipped


def tasks_for_command(parser: argparse.ArgumentParser, data: Path, names: str,
                      what: str) -> tuple[list[Task], list[str]]:
    """The tasks a benchmark command asked for (``names``: comma-separated) and why any were skipped, also
    said on stderr; an unknown name is a usage error, and no data at all an empty list (reason printed)."""
    try:
        tasks, skipped = load_tasks(data, tuple(t for t in names.split(",") if t))
    except ValueError as exc:
        parser.error(str(exc))
    for s in skipped:
        print(f"skipped {s}", file=sys.stderr)
    if not tasks:
        print(f"nothing to run: no data set found; {what} needs ../shared/data", file=sys.stderr)
    return tasks, skipped
