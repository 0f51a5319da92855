"""Should a routing model's county guesses go out without review?  Only if real held-out cases say so.

A routing model guesses the county of a complaint that names none (and sends no place hint) with its county
model; the demo corpus, like any written corpus, ties topics to counties in ways real complaints do not, so by
default such a guess always asks for review.  ``hotline check-guesses`` measures the guesses on labeled cases
the model never trained on (a recent export, with its agencies) and trusts them only when the ones that reach
the review threshold were right at least that often (the 95 % interval's lower end, on at least 30 cases):

    hotline check-guesses --data recent.xlsx --text 留言详情 --agency 承办单位 [--place-column 区县] \\
        [--threshold 0.5] [--model VERSION] [--save [--promote]]

``--save`` writes the checked model as a new version (the check is in its manifest, ``data.directory.
place_guess_check``); a later check replaces it.  ``check_place_guesses(model, data, ...)`` from Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from classifier.errors import ConfigError, MissingColumnError, TrainingDataError
from classifier.routing import routes

__all__ = ["check_place_guesses", "add_command"]


def check_place_guesses(model: Any, data: pd.DataFrame | str | Path, text: str, agency: str,
                        place: str | None = None, threshold: float = 0.5,
                        encoding: str | None = None) -> dict[str, Any]:
    """``model.check_place_guesses`` on the rows of ``data`` (a frame or a data file) with a text and an
    agency label; ``place``: a column of place hints, passed as the service would."""
    from .data import read_table

    if not routes(model):
        raise TrainingDataError("checking place guesses needs a routing model (trained with --directory); this "
                                "model has no routing directory")
    df = read_table(data, encoding=encoding) if isinstance(data, (str, Path)) else data
    missing = [c for c in (text, agency, place) if c and c not in df.columns]
    if missing:
        raise MissingColumnError(f"column(s) {missing} not in the data; its columns are {list(df.columns)}. Name "
                                 "the right ones with --text / --agency / --place-column")
    rows = df[df[text].notna() & df[text].astype(str).str.strip().ne("")
              & df[agency].notna() & df[agency].astype(str).str.strip().ne("")]
    if rows.empty:
        raise TrainingDataError(f"no row has both a text ({text!r}) and an agency ({agency!r}); the check needs "
                                "labeled cases")
    hints = None
    if place:
        hints = [None if pd.isna(v) else str(v) for v in rows[place]]
    return model.check_place_guesses(rows[text].astype(str).tolist(), rows[agency].astype(str).tolist(),
                                     threshold=threshold, places=hints)


def add_command(sub: Any) -> None:
    from .cli import _store_arg, add_data_file, add_model_option

    p = sub.add_parser("check-guesses", help="check the county model's guesses on labeled held-out cases "
                       "before trusting them without review",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_file(p, "labeled cases the model never trained on: CSV (UTF-8 or GBK), XLSX, JSONL or Parquet")
    p.add_argument("--text", required=True, metavar="COLUMN", help="column holding the complaint text")
    p.add_argument("--agency", required=True, metavar="COLUMN",
                   help="column holding the agency that handled the case")
    p.add_argument("--place-column", "--place", dest="place_column", metavar="COLUMN",
                   help="column of place hints (the export's district field), as the service takes them")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="the agency's review threshold the guesses must live up to (default 0.5)")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    add_model_option(p)
    p.add_argument("--save", action="store_true", help="save the checked model as a new version")
    p.add_argument("--promote", action="store_true", help="with --save: make the new version current")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _store_arg(p)
    p.set_defaults(func=cmd_check_guesses)


def cmd_check_guesses(args: argparse.Namespace) -> int:
    from .cli import _print_json, _store, load_for_cli
    from .train import save_model

    if args.promote and not args.save:
        raise ConfigError("--promote needs --save (it promotes the version --save writes)")
    stored = load_for_cli(args)
    check = check_place_guesses(stored.model, args.data, text=args.text, agency=args.agency, place=args.place_column,
                                threshold=args.threshold, encoding=args.encoding)
    version = None
    if args.save:
        version = save_model(stored.model, _store(args), promote=True if args.promote else None)
    if args.json:
        _print_json({**check, "checked_version": stored.version, "saved_version": version})
        return 0
    print(f"county-model guesses of version {stored.version}: {check['reason']}")
    if version is not None:
        print(f"saved the checked model as version {version}" + (" (current)" if args.promote else ""),
              file=sys.stdout)
    return 0
