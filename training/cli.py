"""``hotline``: the command line.  It only parses, calls the library and prints.

    hotline train cases.xlsx --text 留言详情 --category 一级标签 --agency 承办单位
    hotline predict "兴庆区六盘山中路与凤凰南街交叉口施工，导致交通拥堵" [--json]
    hotline models list | show VERSION | promote VERSION | rollback | sign VERSION
    hotline demo

Every command takes ``--store PATH`` (default ``$HOTLINE_MODEL_STORE`` or ``models/``).  Errors print one line
``error: ...`` to stderr and exit with status 2; nothing prints a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from classifier.config import TrainingConfig, load_config
from classifier.errors import (
    ComplaintInputError,
    ConfigError,
    DictionaryError,
    DirectoryError,
    ModelStoreError,
    TrainingDataError,
)
from classifier.store import ModelStore, default_store_path

__all__ = ["main", "build_parser"]

USER_ERRORS = (ComplaintInputError, ConfigError, DictionaryError, DirectoryError, ModelStoreError, TrainingDataError,
               KeyError)


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=None,
                   help="model store folder (default: $HOTLINE_MODEL_STORE or models/)")


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(args.store if args.store is not None else default_store_path())


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


# -- train ----------------------------------------------------------------------------------------------------
def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data file, its columns and the training-config options shared by `train` and `tune`."""
    p.add_argument("data", type=Path)
    p.add_argument("--text", required=True, help="column holding the complaint text")
    p.add_argument("--category", help="column holding the category label")
    p.add_argument("--agency", help="column holding the agency label")
    p.add_argument("--target", action="append", default=[], metavar="NAME=COLUMN",
                   help="any other target, e.g. --target subcategory=二级标签 (repeatable)")
    p.add_argument("--group", metavar="COLUMN",
                   help="column (caller, work-order thread) whose rows stay together on one side of the hold-out "
                        "and of every cross-validation fold, so repeat calls do not inflate the metrics")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.add_argument("--config", type=Path, help="JSON training config (strict: unknown keys fail)")
    p.add_argument("--min-class-count", type=int)
    p.add_argument("--rare-policy", choices=["error", "other", "drop"])
    p.add_argument("--seed", type=int)
    p.add_argument("--user-dict", type=Path, help="jieba user dictionary (embedded in the model)")
    p.add_argument("--stop-words", type=Path, help="stop-word list (embedded in the model)")


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a new model version from labeled cases",
                       description="Train from a CSV (UTF-8 or GBK), XLSX, JSONL or Parquet file.")
    add_data_arguments(p)
    p.add_argument("--test-size", type=float)
    p.add_argument("--cv", type=int, help="also run k-fold cross-validation")
    p.add_argument("--directory", type=Path, metavar="FOLDER",
                   help="routing directory (places.csv, agencies.csv, functions.csv): route agencies by "
                        "place and function instead of the flat agency model alone")
    p.add_argument("--promote", action="store_true", help="make the new version current")
    p.add_argument("--quiet", action="store_true", help="no progress bars or report")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _store_arg(p)
    p.set_defaults(func=cmd_train)


def training_config(args: argparse.Namespace) -> TrainingConfig:
    config = load_config(args.config) if args.config else TrainingConfig()
    updates: dict[str, Any] = {}
    for flag, key in (("min_class_count", "min_class_count"), ("rare_policy", "rare_policy"),
                      ("test_size", "test_size"), ("cv", "cv_folds"), ("seed", "seed")):
        if getattr(args, flag, None) is not None:
            updates[key] = getattr(args, flag)
    for flag in ("user_dict", "stop_words"):
        if getattr(args, flag, None) is not None:
            updates[flag] = str(getattr(args, flag))
    return config.with_updates(**updates) if updates else config


def parse_targets(args: argparse.Namespace) -> dict[str, str]:
    targets = {name: col for name, col in (("category", args.category), ("agency", args.agency)) if col}
    for spec in args.target:
        name, sep, col = spec.partition("=")
        if not sep or not name or not col:
            raise ConfigError(f"--target expects NAME=COLUMN, got {spec!r}")
        targets[name] = col
    if not targets:
        raise ConfigError("name at least one label column: --category COLUMN and/or --agency COLUMN")
    return targets


def cmd_train(args: argparse.Namespace) -> int:
    from .train import save_model, train

    config = training_config(args)
    log = None if (args.quiet or args.json) else (lambda m: print(m, file=sys.stderr))
    directory = None
    if args.directory is not None:
        from classifier.jurisdiction import RoutingDirectory

        directory = RoutingDirectory.from_dir(args.directory)
    model = train(args.data, text=args.text, targets=parse_targets(args), config=config,
                  progress=False if args.quiet else None, log=log, encoding=args.encoding, directory=directory,
                  group=args.group)
    store = _store(args)
    version = save_model(model, store, promote=True if args.promote else None)
    current = store.current() == version
    heads = {name: head.describe() for name, head in model.heads_.items()}
    if args.json:
        routing = getattr(model, "routing_summary_", None)
        _print_json({"version": version, "current": current, "store": str(store.path),
                     "metrics": _headline(model.metrics), "heads": heads,
                     **({"routing": routing} if routing else {})})
    else:
        for target, m in _headline(model.metrics).items():
            print(f"{target}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
        for name, head in heads.items():
            how = (", ".join(f"{k} {w:.3g}" for k, w in head["fusion_weights"].items()) if head["kind"] == "fused"
                   else f"temperature {head['temperature']:.3g}")
            if head["kind"] == "fused" and head["temperature"] != 1.0:  # recalibrated (the routing county head)
                how += f"; temperature {head['temperature']:.3g}"
            print(f"head {name}: {head['kind']} ({how}), {head['classes']} classes, "
                  f"{head['features_used']:,} features used")
        routing = getattr(model, "routing_summary_", None)
        if routing:
            print(_routing_line(routing))
        state = "current" if current else "not current: compare it, then `hotline models promote " + version + "`"
        print(f"saved model version {version} in {store.path} ({state})")
    return 0


def _routing_line(summary: dict[str, Any]) -> str:
    """What a routing model was trained with, from its ``routing_summary_``."""
    parts = [f"routing: {summary.get('agencies')} agencies in the directory, "
             f"{summary.get('function_cases')} cases taught the function"]
    if summary.get("agencies_not_in_directory"):
        parts.append(f"{summary['agencies_not_in_directory']} training agencies not in the directory")
    if summary.get("category_function_pairs"):
        parts.append(f"category and function decided together ({summary['category_function_pairs']} pairs)")
    calibration = summary.get("county_calibration")
    if calibration:
        parts.append(f"county guesses calibrated on {calibration['unnamed_cases']} cases that name no place "
                     f"(right {calibration['out_of_fold_accuracy']:.0%} of the time)")
    return "; ".join(parts)


def _headline(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    keys = ("accuracy", "macro_f1", "top3_accuracy")
    return {t: {k: round(m[k], 4) for k in keys if k in m} for t, m in metrics.items()}


# -- predict --------------------------------------------------------------------------------------------------
def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify complaint texts",
                       description="Texts as arguments, or one per line from --file or stdin ('-').")
    p.add_argument("texts", nargs="*", help="complaint texts; '-' or none reads stdin, one per line")
    p.add_argument("--file", type=Path, help="file with one complaint per line (UTF-8)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--explain", action="store_true", help="show the terms behind each label")
    p.add_argument("--place", help="where the cases are (e.g. 海原县, 海原县李旺镇), used by a routing model when a "
                   "text names no place itself")
    p.add_argument("--json", action="store_true", help="one JSON object per input text")
    p.add_argument("--version", help="model version (default: the current one)")
    p.add_argument("--strict", action="store_true", help="refuse a model trained with other library versions")
    _store_arg(p)
    p.set_defaults(func=cmd_predict)


def _read_texts(args: argparse.Namespace) -> list[str]:
    if args.file is not None:
        try:
            lines = args.file.read_text(encoding="utf-8-sig").splitlines()
        except FileNotFoundError:
            raise ComplaintInputError(f"file not found: {args.file}") from None
        except UnicodeDecodeError:
            raise ComplaintInputError(f"{args.file} is not UTF-8; convert it first") from None
        texts = [ln for ln in lines if ln.strip()]
    elif not args.texts or args.texts == ["-"]:
        texts = [ln for ln in sys.stdin.read().splitlines() if ln.strip()]
    else:
        texts = list(args.texts)
    if not texts:
        raise ComplaintInputError("no complaint text given: pass it as an argument, with --file, or on stdin")
    return texts


def load_for_cli(args: argparse.Namespace) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = _store(args).load(getattr(args, "version", None), strict=getattr(args, "strict", False))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return stored


def cmd_predict(args: argparse.Namespace) -> int:
    texts = _read_texts(args)
    stored = load_for_cli(args)
    places = [args.place] * len(texts) if args.place else None
    results = stored.model.predict_details(texts, top_k=args.top_k, explain=args.explain, places=places)
    for result in results:
        if args.json:
            _print_json(json_record(result, stored))
        else:
            print(format_prediction(result))
    return 0


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
        lines.append(f"routing: {routing['path']} (place {place['name'] or 'unknown'}, "
                     f"function {fn['label']} {fn['score']:.2f})")
    if result.get("needs_review"):
        lines.append("needs review: a score is under its threshold")
    return "\n".join(lines) + "\n"


# -- models ---------------------------------------------------------------------------------------------------
def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, promote, roll back and sign model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    for name, helptext in (("list", "all versions"), ("show", "one version's manifest"),
                           ("promote", "make a version current"), ("rollback", "go back to the previous current"),
                           ("sign", "sign a version you trust with $HOTLINE_STORE_SIGNING_KEY")):
        mp = msub.add_parser(name, help=helptext)
        if name in ("show", "promote", "sign"):
            mp.add_argument("version", help="version id (show also takes 'current' or 'latest')")
        mp.add_argument("--json", action="store_true")
        _store_arg(mp)
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    store = _store(args)
    action = args.models_command
    if action == "list":
        rows = store.summary()
        if args.json:
            _print_json({"store": str(store.path), "current": store.current(), "versions": rows})
        elif not rows:
            print(f"no model versions in {store.path}")
        for row in ([] if args.json else rows):
            flag = "*" if row["current"] else " "
            if "error" in row:
                print(f"{flag} {row['version']}  BROKEN: {row['error']}")
                continue
            m = "; ".join(f"{t} acc {v.get('accuracy', float('nan')):.3f}" for t, v in row["metrics"].items() if v)
            print(f"{flag} {row['version']}  {row['created']}  rows {row['rows']}  {m}")
    elif action == "show":
        version = store.resolve(args.version)
        manifest = store.verify(version)
        if args.json:
            _print_json(manifest)
        else:
            print(json.dumps(manifest, ensure_ascii=False, indent=2))
    elif action == "promote":
        version = store.promote(args.version)
        _print_json({"current": version}) if args.json else print(f"current version is now {version}")
    elif action == "rollback":
        version = store.rollback()
        _print_json({"current": version}) if args.json else print(f"rolled back: current version is now {version}")
    elif action == "sign":
        version = store.sign(store.resolve(args.version))
        _print_json({"signed": version}) if args.json else print(f"signed {version}")
    return 0


# -- demo -----------------------------------------------------------------------------------------------------
def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="train the bundled Ningxia demo model if the store is empty, then predict")
    p.add_argument("texts", nargs="*", help="complaints to classify (default: a few samples)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--retrain", action="store_true", help="train a new demo version even if one exists")
    _store_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import SAMPLE_COMPLAINTS, ensure_demo_model

    store = _store(args)
    version, trained = ensure_demo_model(store, retrain=args.retrain,
                                         log=lambda m: print(m, file=sys.stderr))
    if trained:
        print(f"trained the demo model: version {version} in {store.path}", file=sys.stderr)
    stored = store.load(version)
    texts = args.texts or SAMPLE_COMPLAINTS
    for text, result in zip(texts, stored.model.predict_details(texts)):
        if args.json:
            _print_json(json_record(result, stored))
        else:
            print(text)
            print(format_prediction(result))
    return 0


# -- entry point ----------------------------------------------------------------------------------------------
COMMANDS: list[Callable[[Any], None]] = [_add_train, _add_predict, _add_models, _add_demo]


def _optional_commands() -> Iterable[Callable[[Any], None]]:
    """Commands that live in their own modules (serve, report, tune, learning-curve); each offers ``add_command``."""
    import importlib

    for module in ("serve", "training.report", "training.tune", "training.curve", "training.feedback_cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        add = getattr(mod, "add_command", None)
        if add is not None:
            yield add


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description="12345 hotline complaint classifier")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in [*COMMANDS, *_optional_commands()]:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hotline predict ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
