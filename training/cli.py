"""``hotline``: the command line.  It only parses, calls the library and prints.

    hotline train --data cases.xlsx --text 留言详情 --category 一级标签 --agency 承办单位
    hotline predict "兴庆区六盘山中路与凤凰南街交叉口施工，导致交通拥堵" [--json]
    hotline predict --data cases.xlsx --text 留言详情 --id 工单编号 --out predictions.csv
    hotline models list | show VERSION | promote VERSION | rollback | tag VERSION NAME | note VERSION TEXT
    hotline models sign VERSION
    hotline demo

Every command takes ``--store PATH`` (default ``$HOTLINE_MODEL_STORE`` or ``models/``).  One spelling per
option across commands: ``--data FILE`` (``train``, ``tune`` and ``learning-curve`` also take the file as their
first argument, as before), ``--model VERSION`` (``predict --version`` still works).  A version is its id, a
unique prefix of it, a tag, ``current``, ``previous`` or ``latest``.  Errors print one line ``error: ...`` to
stderr and exit with status 2; nothing prints a traceback for a user's mistake.
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
    DecisionLogError,
    DictionaryError,
    DirectoryError,
    ModelStoreError,
    TrainingDataError,
)
from classifier.store import ModelStore, default_store_path

from .loop_cli import add_loop_arguments, loop_config_updates

__all__ = ["main", "build_parser"]

USER_ERRORS = (ComplaintInputError, ConfigError, DictionaryError, DirectoryError, ModelStoreError, TrainingDataError,
               DecisionLogError, KeyError)


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=None,
                   help="model store folder (default: $HOTLINE_MODEL_STORE or models/)")


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(args.store if args.store is not None else default_store_path())


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


# -- options shared by several commands ----------------------------------------------------------------------
def add_data_file(p: argparse.ArgumentParser, required_help: str) -> None:
    """``--data FILE``, also accepted as the first argument (the older spelling)."""
    p.add_argument("data_positional", nargs="?", type=Path, metavar="DATA", help="same as --data")
    p.add_argument("--data", type=Path, metavar="FILE", help=required_help)


def add_model_option(p: argparse.ArgumentParser, default: str | None = "current") -> None:
    p.add_argument("--model", "--version", dest="model", default=default, metavar="VERSION",
                   help="model version: its id, a unique prefix of it, a tag, current, previous or latest "
                        "(default: the current one; --version is the older spelling)")


def _merge_aliases(args: argparse.Namespace) -> None:
    """``train DATA`` and ``train --data DATA`` are one option: refuse two different files, or none."""
    if not hasattr(args, "data_positional"):
        return
    positional, option = args.data_positional, getattr(args, "data", None)
    if positional is not None and option is not None and positional != option:
        raise ConfigError(f"two data files given ({positional} and --data {option}); give one")
    args.data = option if option is not None else positional
    if args.data is None and getattr(args, "feedback", None) is not None:
        return  # `train --feedback LOG` alone trains on the corrections
    if args.data is None:
        raise ConfigError("give the data file: --data FILE (CSV, XLSX, JSONL or Parquet)"
                          + (", and/or --feedback LOG_URL_OR_FILE" if hasattr(args, "feedback") else ""))


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data file, its columns and the training-config options shared by `train`, `tune` and
    `learning-curve`."""
    add_data_file(p, "labeled cases: CSV (UTF-8 or GBK), XLSX, JSONL or Parquet")
    p.add_argument("--text", required=True, metavar="COLUMN", help="column holding the complaint text")
    p.add_argument("--category", metavar="COLUMN", help="column holding the category label")
    p.add_argument("--agency", metavar="COLUMN", help="column holding the agency label")
    p.add_argument("--target", action="append", default=[], metavar="NAME=COLUMN",
                   help="any other target, e.g. --target subcategory=二级标签 (repeatable)")
    p.add_argument("--group", metavar="COLUMN",
                   help="column (caller, work-order thread) whose rows stay together on one side of the hold-out "
                        "and of every cross-validation fold, so repeat calls do not inflate the metrics")
    p.add_argument("--time", metavar="COLUMN",
                   help="column with each case's date: hold out the latest cases instead of a random share, and "
                        "order cross-validation folds in time (forward-chaining)")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="JSON training config (strict: unknown keys fail); the options below override it")
    p.add_argument("--min-class-count", type=int, metavar="N",
                   help="classes with fewer cases are rare (default 3); see --rare-policy")
    p.add_argument("--rare-policy", choices=["error", "other", "drop"],
                   help="rare classes: error (stop and name them; the default), other (merge them into one class "
                        "named by the config's other_label, 其他), drop (leave their labels out)")
    p.add_argument("--seed", type=int, help="random seed of the hold-out split and the folds (default 42)")
    p.add_argument("--user-dict", type=Path, metavar="FILE", help="jieba user dictionary (embedded in the model)")
    p.add_argument("--stop-words", type=Path, metavar="FILE", help="stop-word list (embedded in the model)")


# -- train ----------------------------------------------------------------------------------------------------
def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a new model version from labeled cases",
                       description="Train from a CSV (UTF-8 or GBK), XLSX, JSONL or Parquet file: validate it, "
                                   "measure on a held-out part, fit on all rows, save a new version.")
    add_data_arguments(p)
    p.add_argument("--test-size", type=float, metavar="SHARE",
                   help="share of the rows held out to measure the model (default 0.2; 0: no measurement)")
    p.add_argument("--cv", type=int, metavar="K", help="also run k-fold cross-validation")
    p.add_argument("--directory", type=Path, metavar="FOLDER",
                   help="routing directory (places.csv, agencies.csv, functions.csv): route agencies by "
                        "place and function instead of the flat agency model alone")
    p.add_argument("--note", metavar="TEXT", help="a note stored with the version (shown by `hotline models list`)")
    p.add_argument("--promote", action="store_true", help="make the new version current")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines; only the result")
    p.add_argument("--verbose", action="store_true",
                   help="also print the whole validation report and how each target's model is built")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--phases", action="store_true",
                   help="print where training spent its time and memory, phase by phase (to stderr)")
    _store_arg(p)
    add_loop_arguments(p)
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
    updates.update(loop_config_updates(args))
    return config.with_updates(**updates) if updates else config


def parse_targets(args: argparse.Namespace) -> dict[str, str]:
    targets = {name: col for name, col in (("category", args.category), ("agency", args.agency)) if col}
    for spec in args.target:
        name, sep, col = spec.partition("=")
        if not sep or not name or not col:
            raise ConfigError(f"--target expects NAME=COLUMN, got {spec!r}")
        targets[name] = col
    if not targets:
        raise ConfigError("name at least one label column: --category COLUMN, --agency COLUMN or "
                          "--target NAME=COLUMN")
    return targets


def _say(quiet: bool) -> Callable[[str], None] | None:
    return None if quiet else (lambda m: print(m, file=sys.stderr, flush=True))


def cmd_train(args: argparse.Namespace) -> int:
    from classifier.progress import progress_default

    from .train import save_model, train
    from .train_summary import headline, training_summary

    config = training_config(args)
    quiet = args.quiet or args.json
    directory = None
    if args.directory is not None:
        from classifier.jurisdiction import RoutingDirectory

        directory = RoutingDirectory.from_dir(args.directory)
    from contextlib import nullcontext

    from classifier.phases import phase, record_phases

    store = _store(args)
    with record_phases() if args.phases else nullcontext() as phases:
        model = train(args.data, text=args.text, targets=parse_targets(args), config=config,
                      progress=False if quiet else progress_default(), log=_say(quiet), encoding=args.encoding,
                      directory=directory, group=args.group, time=args.time, feedback=args.feedback,
                      id_column=args.id_column)
        before = store.current()
        with phase("saving"):
            version = save_model(model, store, promote=True if args.promote else None, note=args.note)
    if phases is not None:
        for row in phases.rows():
            print(f"{'  ' * row['depth']}{row['phase']}: {row['seconds']:,.1f} s ({row['cpu_seconds']:,.1f} s CPU), "
                  f"peak {row['peak_gib']:.2f} GiB", file=sys.stderr)
    current = store.current() == version
    if args.json:
        report = getattr(model, "validation_report", None)
        routing = getattr(model, "routing_summary_", None)
        _print_json({"version": version, "current": current, "store": str(store.path),
                     "metrics": {t: headline(m, len(report.class_counts.get(t, {})) if report else
                                             len(model.classes(t)))
                                 for t, m in model.metrics.items()},
                     "heads": {name: head.describe() for name, head in model.heads_.items()},
                     **({"routing": routing} if routing else {})})
    else:
        print(training_summary(model, version, store.path, current,
                               previous_current=before if current and before != version else None,
                               verbose=args.verbose))
    return 0


def _routing_line(summary: dict[str, Any]) -> str:
    from .train_summary import routing_line

    return routing_line(summary)


def load_for_cli(args: argparse.Namespace, version: str | None = None) -> Any:
    """Load ``version`` (default: ``args.model``) from the store, printing library-version warnings as
    ``warning: ...`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = _store(args).load(version if version is not None else getattr(args, "model", None),
                                   strict=getattr(args, "strict", False))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return stored


# -- demo -----------------------------------------------------------------------------------------------------
def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="train the bundled Ningxia demo model if the store is empty, then predict")
    p.add_argument("texts", nargs="*", help="complaints to classify (default: a few samples)")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
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
    from .predict_cli import format_prediction, json_record

    for text, result in zip(texts, stored.model.predict_details(texts)):
        if args.json:
            _print_json(json_record(result, stored))
        else:
            print(text)
            print(format_prediction(result))
    return 0


# -- entry point ----------------------------------------------------------------------------------------------
def _add_predict(sub: Any) -> None:
    from .predict_cli import add_command

    add_command(sub)


def _add_models(sub: Any) -> None:
    from .models_cli import add_command

    add_command(sub)


COMMANDS: list[Callable[[Any], None]] = [_add_train, _add_predict, _add_models, _add_demo]


def _optional_commands() -> Iterable[Callable[[Any], None]]:
    """Commands that live in their own modules (serve, report, tune, learning-curve, feedback, check-guesses);
    each offers ``add_command``."""
    import importlib

    for module in ("serve", "training.report_cli", "training.tune", "training.curve", "training.feedback_cli",
                   "training.place_guesses", "training.select"):
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
        _merge_aliases(args)
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hotline predict ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
