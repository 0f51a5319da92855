"""``hotline predict``: texts as arguments, lines of a file or stdin, or a column of a data file.

    hotline predict "同心县出租车拒载" [--json]
    hotline predict --file complaints.txt --json          # one record per line, blank lines as error records
    hotline predict --data cases.xlsx --text 留言详情 --id 工单编号 --out predictions.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from classifier.errors import ComplaintInputError, ConfigError

from .batch_predict import EMPTY_TEXT, check_output_path, classify_texts, predict_file, read_lines
from .cli import _print_json, _store_arg, add_model_option, load_for_cli

__all__ = ["add_command", "cmd_predict", "format_prediction", "json_record"]


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "predict", help="classify complaint texts: arguments, a text file's lines, or a data file's column",
        description="Texts as arguments; one per line from --file or stdin ('-'); or the --text column of a "
                    "--data file (CSV UTF-8/GBK, XLSX, JSONL, Parquet) written to --out (CSV, XLSX or JSONL) "
                    "with each row's number and id. Every input line or row gives one output record; one "
                    "that cannot be classified (an empty line) is an error record with its number.")
    p.add_argument("texts", nargs="*", help="complaint texts; '-' or none reads stdin, one per line")
    p.add_argument("--file", type=Path, metavar="FILE",
                   help="text file with one complaint per line (UTF-8 or GBK, detected; or --encoding)")
    batch = p.add_argument_group("a data file's column (--data)")
    batch.add_argument("--data", type=Path, metavar="FILE",
                       help="cases to classify: CSV (UTF-8 or GBK), XLSX, JSONL or Parquet")
    batch.add_argument("--text", metavar="COLUMN", default=None,
                       help="with --data: the column holding the complaint text (default: text)")
    batch.add_argument("--id", dest="id_column", metavar="COLUMN",
                       help="with --data: a case id column (e.g. the work-order number) copied into every record")
    batch.add_argument("--place-column", metavar="COLUMN",
                       help="with --data: a column of place hints (the export's district field) for a routing model")
    batch.add_argument("--out", type=Path, metavar="FILE",
                       help="with --data: write the records to FILE (.csv, .xlsx or .jsonl, by its extension; "
                            "default: JSON lines on stdout)")
    p.add_argument("--encoding", help="encoding of --file or a CSV --data file (default: detect UTF-8 / GBK)")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="alternatives per target (default 3)")
    p.add_argument("--explain", action="store_true", help="show the terms behind each label")
    p.add_argument("--place", help="where the cases are (e.g. 海原县, 海原县李旺镇), used by a routing model when a "
                   "text names no place itself")
    p.add_argument("--json", action="store_true", help="one JSON object per input text")
    add_model_option(p)
    p.add_argument("--strict", action="store_true", help="refuse a model trained with other library versions")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line on stderr")
    _store_arg(p)
    from .distributed import add_scheduler_option

    add_scheduler_option(batch)
    p.set_defaults(func=cmd_predict)


def _warn_unusable_place(args: argparse.Namespace, model: Any) -> None:
    """``--place`` the routing directory cannot place decides nothing: say so (as the service's ``warnings``)."""
    from classifier.routing import PLACE_HINT_IGNORED_MESSAGE, routes, unusable_place

    if args.place and args.place.strip() and routes(model) and unusable_place(model, args.place.strip()):
        print(f"warning: --place {args.place.strip()!r}: {PLACE_HINT_IGNORED_MESSAGE}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> int:
    if args.scheduler is not None:
        return _predict_on_cluster(args)
    if args.data is not None:
        return _predict_data(args)
    for flag, value in (("--text", args.text), ("--id", args.id_column), ("--place-column", args.place_column),
                        ("--out", args.out)):
        if value is not None:
            raise ConfigError(f"{flag} goes with --data FILE (a data file's column); for plain texts use "
                              "arguments, --file or stdin")
    if args.file is not None or not args.texts or args.texts == ["-"]:
        return _predict_lines(args)
    stored = load_for_cli(args)
    _warn_unusable_place(args, stored.model)
    places = [args.place] * len(args.texts) if args.place else None
    results = stored.model.predict_details(list(args.texts), top_k=args.top_k, explain=args.explain, places=places)
    for result in results:
        if args.json:
            _print_json(json_record(result, stored))
        else:
            print(format_prediction(result))
    return 0


def _predict_lines(args: argparse.Namespace) -> int:
    """One record per line of --file or stdin, each with its line number; a blank line is an error record."""
    if args.texts and args.texts != ["-"]:
        raise ConfigError("give texts as arguments or --file, not both")
    lines = read_lines(args.file, args.encoding)
    if not any(line.strip() for line in lines):
        where = args.file if args.file is not None else "stdin"
        raise ComplaintInputError(f"no complaint text in {where}: it is empty or holds only blank lines")
    stored = load_for_cli(args)
    _warn_unusable_place(args, stored.model)
    records = classify_texts(stored.model, lines, version=stored.version, top_k=args.top_k, explain=args.explain,
                             places=[args.place] * len(lines) if args.place else None)
    errors = []
    for n, record in enumerate(records, start=1):
        if args.json:
            _print_json({"line": n, **record})
        elif "error" in record:
            print(f"line {n}: error: {record['error']}\n")
        else:
            print(format_prediction(_details(record)))
        if "error" in record:
            errors.append(n)
    if errors and not args.quiet:
        kind = "empty" if all(records[n - 1]["error"] == EMPTY_TEXT for n in errors) else "unusable"
        shown = ", ".join(map(str, errors[:10])) + (", ..." if len(errors) > 10 else "")
        print(f"{len(errors)} of {len(lines)} lines {kind} (line {shown}): error records, not classified",
              file=sys.stderr)
    return 0


def _predict_data(args: argparse.Namespace) -> int:
    from classifier.progress import progress_default

    if args.texts or args.file is not None:
        raise ConfigError("give --data FILE or texts (arguments, --file, stdin), not both")
    check_output_path(args.out, args.data)
    stored = load_for_cli(args)
    _warn_unusable_place(args, stored.model)
    summary = predict_file(stored.model, args.data, args.text or "text", out=args.out, id_column=args.id_column,
                           place_column=args.place_column, place=args.place, version=stored.version,
                           top_k=args.top_k, explain=args.explain, encoding=args.encoding,
                           progress=not args.quiet and progress_default())
    if not args.quiet:
        print(f"{summary.sentence()} (model version {stored.version})", file=sys.stderr)
    return 0


def _predict_on_cluster(args: argparse.Namespace) -> int:
    """``--data PATH --scheduler [ADDRESS]``: the same records, one file per partition (training.distributed)."""
    import time

    from .distributed import check_cluster_args, cluster_client, predict_on_cluster

    check_cluster_args(args)
    stored = load_for_cli(args)
    t0 = time.perf_counter()
    with cluster_client(args.scheduler) as client:
        done = predict_on_cluster(stored.model, str(args.data), args.text or "text", args.id_column, str(args.out),
                                  client, version=stored.version, top_k=args.top_k, place_column=args.place_column,
                                  place=args.place)
    seconds = time.perf_counter() - t0
    if not args.quiet:
        print(f"scored {done.rows:,} rows in {done.partitions} partitions on {done.workers} workers "
              f"({done.rows / max(seconds, 1e-9):,.0f} rows/s) with model version {stored.version}; wrote "
              f"{done.out}/part-*", file=sys.stderr)
    return 0


def _details(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON record back in ``predict_details``' shape, for the human-readable lines."""
    out: dict[str, Any] = dict(record.get("targets", {}))
    for key in ("routing", "needs_review"):
        if key in record:
            out[key] = record[key]
    return out


def json_record(result: dict[str, Any], stored: Any) -> dict[str, Any]:
    """The service's response shape (``classifier.model.prediction_record``) plus the model version."""
    from classifier.model import prediction_record

    model = stored.model
    return {**prediction_record(result, list(model.targets_), default_threshold=model.review_threshold),
            "model_version": stored.version}


def format_prediction(result: dict[str, Any]) -> str:
    lines = []
    for target, entry in result.items():
        if not isinstance(entry, dict) or "alternatives" not in entry:
            continue
        alts = ", ".join(f"{a['label']} {a['score']:.2f}" for a in entry["alternatives"][1:])
        line = f"{target}: {entry['label']} ({entry['score']:.2f})"
        lines.append(line + (f"   alternatives: {alts}" if alts else ""))
        if entry.get("explanation"):
            lines.append("    because: " + ", ".join(f"{e['term']} {e['weight']:.3f}" for e in entry["explanation"]))
    routing = result.get("routing")
    if routing:
        place, fn = routing["place"], routing["function"]
        lines.append(f"routing: {routing['path']} (place {place.get('name') or 'unknown'}, "
                     f"function {fn['label']} {fn['score']:.2f})")
    if result.get("needs_review"):
        reasons = [e["review_reason"] for e in result.values() if isinstance(e, dict) and "review_reason" in e]
        lines.append(f"needs review: {'; '.join(reasons) if reasons else 'a score is under its threshold'}")
    return "\n".join(lines) + "\n"
