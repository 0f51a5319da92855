"""``hotline report``: the confusion report of a stored version on labeled cases, written as files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .metrics import paired_sentence
from .report import _HEADLINE, evaluate

__all__ = ["add_command", "cmd_report"]


def add_command(sub: Any) -> None:
    from .cli import _store_arg

    p = sub.add_parser("report", help="confusion report of a model version on labeled data (HTML + CSV + JSON)",
                       description="Evaluate a stored model on labeled cases and write report.html, report.json, "
                                   "model_card.md and tables/*.csv|json to --out.")
    from .cli import add_model_option

    add_model_option(p)
    p.add_argument("--data", type=Path, help="labeled cases: CSV (UTF-8/GBK), XLSX, JSONL, Parquet (required unless "
                   "--live)")
    p.add_argument("--text", default="text", help="column holding the complaint text (default: text)")
    p.add_argument("--category", help="column holding the category label")
    p.add_argument("--agency", help="column holding the agency label")
    p.add_argument("--target", action="append", default=[], metavar="NAME=COLUMN", help="any other target")
    p.add_argument("--compare", metavar="OTHER_VERSION",
                   help="also evaluate this version (e.g. current); deltas are --model minus it")
    p.add_argument("--out", type=Path, required=True, help="folder for the report files")
    p.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="case id column (e.g. the work-order number) to copy into the case tables")
    p.add_argument("--place-column", "--place", dest="place_column", metavar="COLUMN",
                   help="column of place hints (the export's district field) for a routing model, as the service "
                        "takes them (--place is the older spelling)")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.add_argument("--threshold", type=float, help="review threshold (default: the model's, 0.5)")
    p.add_argument("--folds", type=int, default=3, help="folds for the disputed-labels check (0: skip)")
    p.add_argument("--top-n", type=int, default=25, help="classes shown in a heatmap before grouping the rest")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _store_arg(p)
    from .live_report import add_live_arguments

    add_live_arguments(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from classifier.errors import ConfigError
    from classifier.progress import progress_default

    from .cli import _print_json, _store, parse_targets
    from .live_report import cmd_live_report, refuse_live_options

    if args.live:
        return cmd_live_report(args)
    refuse_live_options(args)
    if args.data is None:
        raise ConfigError("--data is required: the labeled cases to evaluate on (or --live --since DATE: the "
                          "served model's quality from the decision log)")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.top_n < 2:
        raise ConfigError(f"--top-n must be at least 2, got {args.top_n}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder for the report files")
    if args.folds < 0:
        raise ConfigError(f"--folds must be 0 (skip the disputed-labels check) or more, got {args.folds}")
    targets = parse_targets(args) if (args.category or args.agency or args.target) else None
    store = _store(args)
    stored = store.load(store.resolve(args.model))
    other = store.load(store.resolve(args.compare)) if args.compare else None
    report = evaluate(stored, args.data, text=args.text, targets=targets, compare=other, threshold=args.threshold,
                      oof_folds=args.folds, top_n=args.top_n, encoding=args.encoding,
                      id_column=args.id_column, place_column=args.place_column,
                      progress=not (args.quiet or args.json) and progress_default())
    for warning in report.overlap_warnings():
        print(f"WARNING: {warning}", file=sys.stderr)
    written = report.save(args.out)
    summary = {name: {k: round(t.metrics[k], 4) for k in _HEADLINE} for name, t in report.targets.items()}
    if args.json:
        _print_json({"model_version": report.model_version, "compare_version": report.compare_version,
                     "overlap": {role: o.to_dict() for role, o in (("model", report.overlap),
                                                                    ("compare", report.compare_overlap)) if o},
                     "metrics": summary, "skipped_targets": report.skipped_targets,
                     "comparisons": {name: c.paired for name, c in report.comparisons.items()},
                     "html": str(written["html"]), "out": str(args.out)})
        return 0
    for name, m in summary.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    for name, c in report.comparisons.items():
        d = {r.metric: r.delta for r in c.metrics.itertuples()}
        print(f"{name} vs {report.compare_version}: " + ", ".join(f"{k} {v:+.4f}" for k, v in d.items())
              + f"; {paired_sentence(c.paired)}")
    for name, why in report.skipped_targets.items():
        print(f"skipped {name}: {why}")
    print(f"wrote {written['html']} (+ report.json, model_card.md, tables/)")
    return 0
