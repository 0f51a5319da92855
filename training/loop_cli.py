"""The live loop's options of ``hotline train``: corrections as training data, and what the past is worth.

    hotline train export.csv --text 留言详情 --category 一级标签 --agency 承办单位 --id 工单编号 \\
        --feedback sqlite:///models/decisions.sqlite --time 受理时间 --half-life 180d --retire-after 365d
    hotline train --feedback corrections.csv --category category --agency agency --text text

``--feedback`` takes the decision log (a database URL or its SQLite file) or a file written by
``hotline feedback export``; without an export, its columns (``text``, one per target) are the training data.
"""

from __future__ import annotations

import argparse
from typing import Any

from .recency import parse_duration, parse_retire_after
from .relabel import parse_relabel, read_relabel_file

__all__ = ["add_loop_arguments", "loop_config_updates"]


def add_loop_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the live loop (corrections and recency)")
    g.add_argument("--feedback", metavar="LOG_URL_OR_FILE",
                   help="the decision log's corrected cases beside (or instead of) the export: a database URL "
                        "(sqlite:///..., postgresql+psycopg://...), the log's SQLite file, or a file from "
                        "`hotline feedback export`; corrections override the export's labels of the same case")
    g.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="the export's case-id column, to match corrections to its cases (needed with an export "
                        "and --feedback)")
    g.add_argument("--half-life", metavar="DURATION",
                   help="recent cases weigh more: a case this much older than the newest counts half (e.g. 180d, "
                        "26w, 6m, 1y; needs --time, or corrections alone); off by default")
    g.add_argument("--retire-after", action="append", metavar="[TARGET=]DURATION",
                   help="retire labels no case has named for this long (e.g. 365d: agencies; category=730d); the "
                        "report says which (repeatable; needs --time, or corrections alone)")
    g.add_argument("--relabel", action="append", metavar="[TARGET:]OLD=NEW",
                   help="a renamed or merged label: every case of OLD learns NEW (the agency unless TARGET: is "
                        "given, e.g. 黄岛区政府=西海岸新区政府 or category:旧类=新类; repeatable)")
    g.add_argument("--relabel-file", metavar="CSV",
                   help="renames from a CSV with columns target, old, new (what `hotline feedback renames` "
                        "writes)")


def loop_config_updates(args: argparse.Namespace) -> dict[str, Any]:
    """The training-config changes the options ask for (``recency.*``, ``relabel``)."""
    updates: dict[str, Any] = {}
    if getattr(args, "half_life", None):
        updates["recency.half_life_days"] = parse_duration(args.half_life, "--half-life")
    if getattr(args, "retire_after", None):
        updates["recency.retire_after_days"] = parse_retire_after(args.retire_after)
    mapping: dict[str, dict[str, str]] = {}
    if getattr(args, "relabel_file", None):
        mapping = read_relabel_file(args.relabel_file)
    for target, pairs in parse_relabel(getattr(args, "relabel", None)).items():
        mapping.setdefault(target, {}).update(pairs)  # the command line wins over the file
    if mapping:
        updates["relabel"] = mapping
    return updates
