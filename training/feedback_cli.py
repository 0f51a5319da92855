"""``hotline feedback`` and ``hotline decisions``: the decision log from the command line.

    hotline feedback import orders.xlsx --case-id 工单编号 --agency 承办单位 [--category 一级标签] \\
        [--source dispatcher | --source-column 来源] [--time 办结时间] [--text 留言详情]
    hotline feedback export --since 2026-11-01 [--until 2026-11-30] --out cases.csv
    hotline feedback renames [--since 2026-09-01] --out renames.csv     # then: hotline train --relabel-file
    hotline decisions purge --older-than 180d [--texts-only]
    hotline decisions stats

The log is ``--log URL``, else ``$HOTLINE_DECISION_LOG_URL`` (the service's setting), else
``decisions.sqlite`` in the model store (``--store``).  The library behind them is ``training.feedback`` and
``live.log``; this module only parses, calls and prints.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from classifier.errors import ConfigError, CorrectionError, DecisionLogError
from live.db import default_url, describe_url
from live.log import MAX_CORRECTIONS_PER_BATCH, DecisionLog
from live.schema import SOURCES

from .periods import parse_duration, parse_when, time_zone

__all__ = ["add_command", "add_log_arguments", "add_time_zone_argument", "open_decision_log", "log_url", "LOG_URL_ENV"]

LOG_URL_ENV = "HOTLINE_DECISION_LOG_URL"


# -- shared by the live-loop commands (and `hotline report --live`) ----------------------------------------------
def add_log_arguments(p: Any, store: bool = True) -> None:
    """``--log URL`` (and ``--store``) on a parser or an argument group."""
    p.add_argument("--log", metavar="URL", help=f"the decision log's database URL (default: ${LOG_URL_ENV}, else "
                   "decisions.sqlite in the model store), e.g. sqlite:////var/lib/hotline/decisions.sqlite or "
                   "postgresql+psycopg://user:password@host/dbname")
    if store:
        from .cli import _store_arg

        _store_arg(p)


def add_time_zone_argument(p: Any) -> None:
    p.add_argument("--timezone", metavar="ZONE",
                   help="time zone of dates and times given without an offset, e.g. Asia/Shanghai, UTC, +08:00 "
                        "(default: the machine's own)")


def log_url(args: argparse.Namespace) -> str:
    if getattr(args, "log", None):
        return str(args.log)
    if os.environ.get(LOG_URL_ENV):
        return os.environ[LOG_URL_ENV]
    from classifier.store import default_store_path

    return default_url(args.store if getattr(args, "store", None) is not None else default_store_path())


def open_decision_log(args: argparse.Namespace, *, create: bool = False, store_texts: bool = False) -> DecisionLog:
    """The log the arguments name.  A SQLite file that does not exist is an error unless ``create`` (reading a
    log that was never written means a wrong path, not an empty log)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = log_url(args)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DecisionLogError(f"--log {url!r} is not a database URL; use e.g. "
                               "sqlite:////var/lib/hotline/decisions.sqlite or "
                               "postgresql+psycopg://user:password@host/dbname") from None
    if parsed.get_backend_name() == "sqlite" and not create:
        database = parsed.database or ""
        if not database or database == ":memory:" or not Path(database).is_file():
            raise DecisionLogError(
                f"no decision log at {describe_url(url)}: the service creates it when it logs its first decision "
                f"(HOTLINE_DECISION_LOG_URL, else decisions.sqlite in its model store); pass --log URL or "
                "--store PATH of the service's store")
    return DecisionLog(url, store_texts=store_texts)


def _user_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The log's errors end the command like the other user errors: one line, status 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (DecisionLogError, CorrectionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _print_json(obj: Any) -> None:
    from .cli import _print_json as print_json

    print_json(obj)


# -- hotline feedback ---------------------------------------------------------------------------------------------
def _add_feedback(sub: Any) -> None:
    p = sub.add_parser("feedback", help="import corrections from work-order exports; export labeled cases",
                       description="The truth that comes back after a prediction: the dispatcher's final "
                                   "category and agency, an agency's return, an audit.")
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    imp = fsub.add_parser(
        "import", help="store the final labels of an export's cases as corrections",
        description="Read a CSV (UTF-8 or GBK, detected), XLSX, JSONL or Parquet export: a case id and final labels "
                    "per row (blank labels are left out: an export may carry only the agency). Each row is "
                    "stored, replaces the same source's earlier correction (kept in the history), comes back "
                    "unchanged (imported before) or is refused with its row number and the reason.")
    imp.add_argument("data", type=Path, metavar="FILE",
                     help="the work-order export: CSV (UTF-8 or GBK), XLSX, JSONL, Parquet")
    imp.add_argument("--case-id", required=True, metavar="COLUMN",
                     help="column holding the case id the service predicted with (the work-order number)")
    imp.add_argument("--category", metavar="COLUMN", help="column holding the final category")
    imp.add_argument("--agency", metavar="COLUMN", help="column holding the final agency")
    imp.add_argument("--target", action="append", default=[], metavar="NAME=COLUMN",
                     help="the final label of any other target of the model (repeatable)")
    who = imp.add_mutually_exclusive_group()
    who.add_argument("--source", choices=SOURCES, default=None,
                     help="who corrected every row's case (default: dispatcher)")
    who.add_argument("--source-column", metavar="COLUMN",
                     help=f"column holding each row's source ({', '.join(SOURCES)})")
    imp.add_argument("--time", metavar="COLUMN",
                     help="column holding when each case was corrected (default: the time of the import)")
    add_time_zone_argument(imp)
    imp.add_argument("--text", metavar="COLUMN",
                     help="column holding the complaint text, for cases the service never predicted (stored "
                          "masked; without it such rows are refused)")
    imp.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    imp.add_argument("--sheet", default=0, help="XLSX sheet name or number (default: the first)")
    imp.add_argument("--batch-size", type=int, default=MAX_CORRECTIONS_PER_BATCH,
                     help=f"corrections per transaction (at most {MAX_CORRECTIONS_PER_BATCH:,})")
    imp.add_argument("--json", action="store_true", help="print the result as JSON (every refused row)")
    add_log_arguments(imp)
    imp.set_defaults(func=cmd_feedback_import)

    exp = fsub.add_parser(
        "export", help="write the log's labeled cases for `hotline train`",
        description="One row per corrected case: case_id, text (masked, where the log stored it), the final label "
                    "of each target, and the source and time of the case's latest correction.")
    exp.add_argument("--since", required=True, metavar="DATE", help="cases corrected from this date or time on")
    exp.add_argument("--until", metavar="DATE",
                     help="... and before this time (a date: up to the end of that day; default: now)")
    add_time_zone_argument(exp)
    exp.add_argument("--out", type=Path, required=True, help="cases.csv (UTF-8 with BOM), .xlsx, .jsonl or .parquet")
    exp.add_argument("--json", action="store_true", help="print the result as JSON")
    add_log_arguments(exp)
    exp.set_defaults(func=cmd_feedback_export)

    ren = fsub.add_parser(
        "renames", help="renamed or merged agencies the corrections show, as a file for `train --relabel-file`",
        description="A new label that takes over an old one's cases: most of the cases corrected to it had been "
                    "routed to the old name, which has (almost) stopped coming back as a final label since. "
                    "Each suggestion comes with its evidence (counts and dates); review the file, then "
                    "`hotline train ... --relabel-file renames.csv`.")
    ren.add_argument("--since", metavar="DATE", help="only predictions from this date or time on (default: all)")
    add_time_zone_argument(ren)
    ren.add_argument("--target", help="only this target (default: every target the log has)")
    ren.add_argument("--min-cases", type=int, default=3,
                     help="cases corrected to the new name and routed to the old one, at least (default: 3)")
    ren.add_argument("--max-old-ratio", type=float, default=0.5,
                     help="since the new name first came back, the old one at most this many times as often "
                          "(default: 0.5)")
    ren.add_argument("--out", type=Path, help="renames.csv (UTF-8 with BOM): target, old, new and the evidence")
    ren.add_argument("--json", action="store_true", help="print the result as JSON")
    add_log_arguments(ren)
    ren.set_defaults(func=cmd_feedback_renames)


def _import_columns(args: argparse.Namespace) -> Any:
    from .cli import parse_targets
    from .feedback import ImportColumns

    targets = parse_targets(args)
    return ImportColumns(case_id=args.case_id, targets=targets, source=args.source or "dispatcher",
                         source_column=args.source_column, time=args.time, text=args.text)


@_user_errors
def cmd_feedback_import(args: argparse.Namespace) -> int:
    from .cli import load_for_cli
    from .data import read_table
    from .feedback import import_corrections, known_labels

    if not 1 <= args.batch_size <= MAX_CORRECTIONS_PER_BATCH:
        raise ConfigError(f"--batch-size must be 1 to {MAX_CORRECTIONS_PER_BATCH:,}, got {args.batch_size}")
    columns = _import_columns(args)
    tz = time_zone(args.timezone)
    sheet = int(args.sheet) if isinstance(args.sheet, str) and args.sheet.isdigit() else args.sheet
    df = read_table(args.data, encoding=args.encoding, sheet=sheet)
    labels = known_labels(load_for_cli(args).model)
    decision_log = open_decision_log(args, create=True, store_texts=columns.text is not None)
    try:
        result = import_corrections(df, decision_log, columns, labels, tz=tz, batch_size=args.batch_size)
    finally:
        decision_log.close()
    if args.json:
        _print_json({**result.to_dict(), "log": describe_url(decision_log.url), "file": str(args.data)})
    else:
        print(result.summary())
        print(f"decision log: {describe_url(decision_log.url)}")
    return 0


@_user_errors
def cmd_feedback_export(args: argparse.Namespace) -> int:
    from .feedback import write_cases

    tz = time_zone(args.timezone)
    since = parse_when(args.since, tz, what="--since")
    until = parse_when(args.until, tz, end_of_day=True, what="--until") if args.until else None
    if until is not None and until <= since:
        raise ConfigError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    decision_log = open_decision_log(args)
    try:
        cases = decision_log.labeled_cases(since=since, until=until)
    finally:
        decision_log.close()
    path = write_cases(cases, args.out)
    targets = [c for c in cases.columns if c not in ("case_id", "text", "source", "time")]
    no_text = int((cases["text"].fillna("").astype(str).str.strip() == "").sum()) if len(cases) else 0
    per_target = {t: int(cases[t].notna().sum()) for t in targets}
    window = f"corrected from {since.isoformat()}" + (f" until {until.isoformat()}" if until else "")
    if args.json:
        _print_json({"out": str(path), "cases": len(cases), "without_text": no_text, "labels": per_target,
                     "since": since.isoformat(), "until": until.isoformat() if until else None,
                     "sources": {str(k): int(v) for k, v in cases["source"].value_counts().items()}
                     if len(cases) else {}})
        return 0
    print(f"wrote {len(cases):,} labeled cases ({window}) to {path}")
    if per_target:
        print("labels: " + ", ".join(f"{t} {n:,}" for t, n in per_target.items()))
    if no_text:
        print(f"{no_text:,} of them have no text (the log keeps texts only when the service is told to, "
              f"HOTLINE_DECISION_LOG_TEXTS, or when a correction brought one): `hotline train` leaves them out")
    if len(cases) > no_text:
        flags = " ".join(f"--{t} {t}" if t in ("category", "agency") else f"--target {t}={t}" for t in targets)
        print(f"train on them: hotline train {path} --text text {flags}")
    return 0


@_user_errors
def cmd_feedback_renames(args: argparse.Namespace) -> int:
    from live.renames import suggest_renames, suggestions_frame

    since = parse_when(args.since, time_zone(args.timezone), what="--since") if args.since else None
    decision_log = open_decision_log(args)
    try:
        found = suggest_renames(decision_log, target=args.target, since=since, min_cases=args.min_cases,
                                max_old_ratio=args.max_old_ratio)
    finally:
        decision_log.close()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        suggestions_frame(found).to_csv(args.out, index=False, encoding="utf-8-sig")
    if args.json:
        _print_json({"renames": [s.to_dict() for s in found], "log": describe_url(decision_log.url),
                     "out": str(args.out) if args.out is not None else None})
        return 0
    if not found:
        print("no renamed or merged label in the corrections" + (f" since {since.isoformat()}" if since else ""))
    for s in found:
        print(f"{s.target}: {s.old} -> {s.new} ({s.reason()})")
    if args.out is not None:
        print(f"wrote {len(found)} rename{'s' if len(found) != 1 else ''} to {args.out}; review it, then "
              f"hotline train ... --relabel-file {args.out}")
    return 0


# -- hotline decisions --------------------------------------------------------------------------------------------
def _add_decisions(sub: Any) -> None:
    p = sub.add_parser("decisions", help="the decision log: purge old records, show what it holds")
    dsub = p.add_subparsers(dest="decisions_command", required=True)
    purge = dsub.add_parser(
        "purge", help="delete decisions older than a retention period",
        description="Delete the decisions (and their per-target predictions) and the replaced corrections older "
                    "than --older-than, and blank older corrections' texts. Current corrections stay: they are the "
                    "cases' labels, the next model's training data.")
    purge.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 180d, 12h, 4w")
    purge.add_argument("--texts-only", action="store_true",
                       help="only blank the stored (masked) texts older than that; keep the records")
    purge.add_argument("--json", action="store_true", help="print what was removed as JSON")
    add_log_arguments(purge)
    purge.set_defaults(func=cmd_decisions_purge)
    stats = dsub.add_parser("stats", help="what the log holds")
    stats.add_argument("--json", action="store_true", help="print the counts as JSON")
    add_log_arguments(stats)
    stats.set_defaults(func=cmd_decisions_stats)


@_user_errors
def cmd_decisions_purge(args: argparse.Namespace) -> int:
    from live.log import utc_now

    age = parse_duration(args.older_than)
    now = utc_now()
    cutoff = now - age
    decision_log = open_decision_log(args)
    try:
        if args.texts_only:
            removed = {"texts": decision_log.purge_texts(age, now=now)}
        else:
            removed = decision_log.purge(age, now=now)
    finally:
        decision_log.close()
    if args.json:
        _print_json({"older_than": args.older_than, "cutoff": cutoff.isoformat(), "removed": removed,
                     "log": describe_url(decision_log.url)})
        return 0
    print(f"purged records from before {cutoff.isoformat()} in {describe_url(decision_log.url)}:")
    if args.texts_only:
        print(f"  blanked {removed['texts']:,} stored texts (decisions and corrections)")
    else:
        print(f"  deleted {removed['decisions']:,} decisions ({removed['predictions']:,} per-target predictions)")
        print(f"  deleted {removed['replaced_corrections']:,} replaced corrections (history)")
        print(f"  blanked {removed['correction_texts']:,} correction texts; current corrections are kept")
    return 0


@_user_errors
def cmd_decisions_stats(args: argparse.Namespace) -> int:
    from .feedback import log_statistics

    decision_log = open_decision_log(args)
    try:
        stats = log_statistics(decision_log)
    finally:
        decision_log.close()
    stats["log"] = describe_url(decision_log.url)
    if args.json:
        _print_json(stats)
        return 0
    t = stats["tables"]
    print(f"decision log: {stats['log']}")
    print(f"decisions: {t['decisions']:,} ({t['predictions']:,} per-target predictions)"
          + (f", {_day(stats['first_decision'])} to {_day(stats['last_decision'])}" if stats["first_decision"] else ""))
    for version, n in stats["decisions_per_version"].items():
        print(f"  model {version}: {n:,}")
    print(f"corrections: {t['corrections']:,} current, {t['correction_history']:,} replaced (history)")
    for source, n in stats["corrections_per_source"].items():
        print(f"  {source}: {n:,}")
    if stats["corrections_with_new_labels"]:
        print(f"  naming a label the model did not know: {stats['corrections_with_new_labels']:,}")
    texts = stats["texts_stored"]
    print(f"stored texts (masked): {texts['decisions']:,} decisions, {texts['corrections']:,} corrections")
    return 0


def _day(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC") if iso else "-"


def add_command(sub: Any) -> None:
    _add_feedback(sub)
    _add_decisions(sub)
