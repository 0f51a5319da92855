"""Which cases to label next: ``hotline select`` (active learning).

    hotline select --data unlabeled.csv --text 留言详情 --budget 200 --out to_label.csv [--id 工单编号]
    hotline select --from-log sqlite:///models/decisions.sqlite --budget 200 --out to_label.csv

When staff can label only N cases, the labels that improve the model most are those of the cases it is least
sure about, spread over what it predicts and over the text, not N copies of one caller's complaint.
``select_cases(model, texts, budget)`` is the pure function:

1. **Uncertainty**, per target, from the calibrated probabilities: ``1 - (p1 - p2)`` (margin, the default: how
   close the runner-up is) or the normalized entropy; a case counts by the target it is least sure about.
2. **Spread over the predicted classes**: the cases are grouped by that target's predicted label, and the
   budget is shared among the groups in proportion to the errors each group is expected to hold (the sum of
   ``1 - p1``), largest first (D'Hondt's method): a class the model is often unsure about gets more picks, a
   confident one none, and no class takes the whole budget.
3. **Spread over the text**: a label fixes a case's near-duplicates too (cosine similarity of the model's own
   TF-IDF features >= ``similarity``, 0.8 by default: on the Qingdao work orders half to three quarters of a
   month's cases have such a twin, and 96 % of the twins share their category, 90 % their agency).  So within a
   group a case is worth the uncertainty of its whole near-duplicate group (information density: a complaint ten
   callers repeat comes before a slightly less certain one-off; ``density=False`` ranks by the case's own
   uncertainty), and a case that is a near-duplicate of one already picked is skipped: repeat calls collapse into
   one pick, which says how many it stands for.  On the month-by-month Qingdao benchmark density raised the
   selected quarter from 0.8429 to 0.8484 (category) and from 0.6801 to 0.6830 (agency) accuracy, and the share
   of later cases with a labeled near-duplicate from 15 % to 20 % (BENCHMARKS.md, the live loop).

Each pick carries its reason.  ``select_from_log`` offers the decision log's cases that no correction has
reached yet (``live.pending``); it needs their stored (masked) texts and says how many have none.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from classifier.errors import ConfigError, TrainingDataError
from classifier.model import check_texts

__all__ = ["Selection", "select_cases", "select_from_log", "uncertainty", "MEASURES", "DEFAULT_SIMILARITY",
           "add_command"]

MEASURES = ("margin", "entropy")
DEFAULT_SIMILARITY = 0.8
_CHUNK = 2000  # candidates per block when measuring their similarity to the picks
_DENSITY_CHUNK = 256  # candidates per block when finding each one's near-duplicates


def uncertainty(proba: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Per row, in [0, 1]: ``1 - (p1 - p2)`` (margin) or the entropy over log(classes) (entropy)."""
    if measure not in MEASURES:
        raise ConfigError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
    P = np.asarray(proba, dtype=np.float64)
    if P.shape[1] < 2:
        return np.zeros(P.shape[0])
    if measure == "margin":
        top2 = -np.sort(-P, axis=1)[:, :2]
        return 1.0 - (top2[:, 0] - top2[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
    return h / math.log(P.shape[1])


@dataclass
class Selection:
    """The picks, best first, and what the choice considered.  ``picks`` columns: ``rank``, ``position`` (in the
    input), ``case_id`` (when ids were given), ``text``, ``unsure_target``, ``uncertainty``, per target
    ``<target>_predicted``, ``<target>_score``, ``<target>_runner_up``, ``near_duplicates`` (other candidates the
    pick stands for) and ``reason``."""

    picks: pd.DataFrame
    candidates: int
    budget: int
    collapsed: int = 0                      # candidates that are near-duplicates of a pick
    targets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        by_target = self.picks["unsure_target"].value_counts().to_dict() if len(self.picks) else {}
        lines = [f"chose {len(self.picks)} of {self.candidates:,} cases for a budget of {self.budget} "
                 f"({self.collapsed:,} near-duplicates collapsed into the picks); least sure about: "
                 + (", ".join(f"{t} {n}" for t, n in by_target.items()) or "none")]
        lines += self.notes
        return "\n".join(lines)

    def to_csv(self, path: str | Path, targets: Sequence[str] | None = None) -> None:
        """The picks with an empty column per target for the final label (UTF-8 with BOM: opens in Excel)."""
        out = self.picks.copy()
        for t in targets if targets is not None else self.targets:
            out[t] = ""
        out.to_csv(path, index=False, encoding="utf-8-sig")


def select_cases(model: Any, texts: Sequence[str], budget: int, *, ids: Sequence[Any] | None = None,
                 targets: Sequence[str] | None = None, measure: str = "margin",
                 similarity: float = DEFAULT_SIMILARITY, density: bool = True) -> Selection:
    """The ``budget`` cases of ``texts`` whose labels would most help ``model`` (see the module's docstring)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a whole number of cases >= 1, got {budget!r}")
    if not 0 < similarity <= 1:
        raise ConfigError(f"similarity must be in (0, 1] (1: only identical texts collapse), got {similarity}")
    if measure not in MEASURES:
        raise ConfigError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
    texts = check_texts(list(texts), model.max_text_length)
    if ids is not None and len(ids) != len(texts):
        raise ConfigError(f"{len(ids)} ids for {len(texts)} texts; give one id per text")
    names = list(model.targets_) if targets is None else list(targets)
    unknown = sorted(set(names) - set(model.targets_))
    if unknown or not names:
        raise ConfigError(f"unknown target(s) {unknown or names}; the model predicts {list(model.targets_)}")
    n = len(texts)
    top: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    U = np.zeros((n, len(names)))
    for j, t in enumerate(names):
        P = np.asarray(model.predict_proba(texts, t), dtype=np.float64)
        classes = np.asarray(model.classes(t), dtype=object)
        order = np.argsort(-P, axis=1, kind="stable")[:, :2]
        first = P[np.arange(n), order[:, 0]]
        second = P[np.arange(n), order[:, 1]] if P.shape[1] > 1 else np.zeros(n)
        runner = classes[order[:, 1]] if P.shape[1] > 1 else np.full(n, "", dtype=object)
        top[t] = (classes[order[:, 0]], first, runner, second)
        U[:, j] = uncertainty(P, measure)
    unsure = U.argmax(axis=1)
    u = U[np.arange(n), unsure]
    strata = [f"{names[unsure[i]]}\x00{top[names[unsure[i]]][0][i]}" for i in range(n)]
    expected: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        expected[s] = expected.get(s, 0.0) + 1.0 - float(top[names[unsure[i]]][1][i])
        members.setdefault(s, []).append(i)
    X = normalize(sp.csr_matrix(model.transform(texts), dtype=np.float64))
    # a label fixes its near-duplicates too (they share it 96 % of the time): a case is worth the uncertainty of
    # its whole near-duplicate group, so a complaint ten callers repeat comes before an odd one-off
    twins = near_duplicates(X, similarity) if density else [np.array([i]) for i in range(n)]
    worth = np.array([float(u[g].sum()) for g in twins])
    for rows in members.values():  # most worth first; then least certain; ties in input order
        rows.sort(key=lambda i: (-worth[i], -u[i], i))

    picked: list[int] = []
    taken: dict[str, int] = dict.fromkeys(members, 0)
    cursor: dict[str, int] = dict.fromkeys(members, 0)
    skipped = np.zeros(n, dtype=bool)
    P_rows: sp.csr_matrix | None = None
    while len(picked) < budget:
        open_strata = [s for s in members if cursor[s] < len(members[s])]
        if not open_strata:
            break
        # D'Hondt: the next pick goes to the group with the most expected errors per pick it already has
        s = max(open_strata, key=lambda k: (expected[k] / (taken[k] + 1), len(members[k]), k))
        while cursor[s] < len(members[s]):
            i = members[s][cursor[s]]
            cursor[s] += 1
            if P_rows is not None and (X[i] @ P_rows.T).max() >= similarity:
                skipped[i] = True
                continue
            picked.append(i)
            taken[s] += 1
            P_rows = X[picked]
            break
    # every candidate that is a near-duplicate of a pick counts for the pick it is most like
    stands_for = np.zeros(len(picked), dtype=np.int64)
    if picked:
        assert P_rows is not None
        is_pick = np.zeros(n, dtype=bool)
        is_pick[picked] = True
        for start in range(0, n, _CHUNK):
            S = np.asarray((X[start:start + _CHUNK] @ P_rows.T).todense())
            best = S.argmax(axis=1)
            near = (S[np.arange(len(S)), best] >= similarity) & ~is_pick[start:start + _CHUNK]
            np.add.at(stands_for, best[near], 1)
    notes = []
    if len(picked) < budget:
        notes.append(f"only {len(picked)} cases are left once near-duplicates collapse: fewer than the budget of "
                     f"{budget}")
    rows = []
    nth: dict[str, int] = {}
    for rank, i in enumerate(picked, 1):
        t = names[unsure[i]]
        label, p1, runner, p2 = (v[i] for v in top[t])
        s = strata[i]
        nth[s] = nth.get(s, 0) + 1
        reason = (f"least sure about the {t}: {label} {p1:.2f} vs {runner} {p2:.2f}" if runner != ""
                  else f"least sure about the {t}: {label} {p1:.2f}")
        reason += (f"; pick {nth[s]} of {taken[s]} among the "
                   f"{len(members[s])} cases predicted {t} {label} (about {expected[s]:.1f} errors expected there)")
        d = int(stands_for[rank - 1])
        if d:
            reason += f"; stands for {d} near-duplicate text{'s' if d != 1 else ''}"
        row: dict[str, Any] = {"rank": rank, "position": i}
        if ids is not None:
            row["case_id"] = ids[i]
        row.update({"text": texts[i], "unsure_target": t, "uncertainty": round(float(u[i]), 4)})
        for name in names:
            lab, q1, run, q2 = (v[i] for v in top[name])
            row.update({f"{name}_predicted": lab, f"{name}_score": round(float(q1), 4), f"{name}_runner_up": run})
        row.update({"near_duplicates": d, "reason": reason})
        rows.append(row)
    return Selection(picks=pd.DataFrame(rows), candidates=n, budget=int(budget), collapsed=int(stands_for.sum()),
                     targets=names, notes=notes)


def near_duplicates(X: sp.csr_matrix, similarity: float) -> list[np.ndarray]:
    """For each row of ``X`` (rows of unit length), the rows at least ``similarity`` like it, itself included."""
    out: list[np.ndarray] = []
    XT = X.T.tocsc()
    for start in range(0, X.shape[0], _DENSITY_CHUNK):
        S = (X[start:start + _DENSITY_CHUNK] @ XT).tocsr()
        S.data[S.data < similarity - 1e-9] = 0.0
        S.eliminate_zeros()
        for r in range(S.shape[0]):
            row = S.indices[S.indptr[r]:S.indptr[r + 1]]
            out.append(np.union1d(row, [start + r]))
    return out


def select_from_log(model: Any, decision_log: Any, budget: int, *, since: datetime | None = None,
                    until: datetime | None = None, **options: Any) -> Selection:
    """``select_cases`` over the decision log's cases that no correction has reached (predicted in
    [since, until)), by their stored masked texts and re-scored by ``model``.  Raises ``TrainingDataError`` when
    none of them has a stored text."""
    from live.pending import uncorrected_cases

    pending = uncorrected_cases(decision_log, since=since, until=until)
    if pending.empty:
        raise TrainingDataError("the decision log has no predicted case without a correction"
                                + (" in that period" if since or until else ""))
    has_text = pending["text"].map(lambda v: isinstance(v, str) and bool(v.strip()))
    missing = int((~has_text).sum())
    if not has_text.any():
        raise TrainingDataError(
            f"none of the {len(pending):,} uncorrected cases in the decision log has a stored text to show a labeler "
            "(the service stores masked texts only with HOTLINE_DECISION_LOG_TEXTS=true); turn it on, or select from "
            "the work-order export: hotline select --data FILE --text COLUMN")
    chosen = pending[has_text].reset_index(drop=True)
    selection = select_cases(model, chosen["text"].tolist(), budget, ids=chosen["case_id"].tolist(), **options)
    if missing:
        selection.notes.append(f"{missing:,} of the {len(pending):,} uncorrected cases have no stored text and were "
                               "not considered (HOTLINE_DECISION_LOG_TEXTS was off when they were predicted, or "
                               "their text was purged)")
    return selection


# -- command line ---------------------------------------------------------------------------------------------
def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "select", help="choose the cases whose labels would help the model most (active learning)",
        description="Rank unlabeled cases by how unsure the current model is, spread over its predicted classes "
                    "and over the text (near-duplicates collapse into one pick), and write the best N with the "
                    "reason for each, and an empty column per target to fill in.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, metavar="FILE", help="unlabeled cases: CSV (UTF-8 or GBK), XLSX, JSONL, "
                                                              "Parquet")
    src.add_argument("--from-log", nargs="?", const=True, metavar="URL_OR_FILE",
                     help="the decision log's cases no correction has reached (needs their stored texts): its URL "
                          "or SQLite file; alone, $HOTLINE_DECISION_LOG_URL, else decisions.sqlite in the store")
    p.add_argument("--text", metavar="COLUMN", help="column holding the complaint text (with --data)")
    p.add_argument("--id", dest="id_column", metavar="COLUMN", help="case-id column to carry into the output")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.add_argument("--budget", type=int, required=True, metavar="N", help="how many cases staff can label")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the chosen cases (CSV)")
    p.add_argument("--target", action="append", metavar="NAME",
                   help="only these targets' uncertainty counts (repeatable; default: every target)")
    p.add_argument("--measure", choices=MEASURES, default="margin",
                   help="uncertainty: margin (1 - the top two probabilities' gap; default) or entropy")
    p.add_argument("--similarity", type=float, default=DEFAULT_SIMILARITY, metavar="COSINE",
                   help=f"texts at least this similar collapse into one pick (default {DEFAULT_SIMILARITY})")
    p.add_argument("--no-density", dest="density", action="store_false",
                   help="rank a case by its own uncertainty, not by that of its whole near-duplicate group")
    p.add_argument("--since", metavar="DATE", help="with --from-log: cases predicted from this date")
    p.add_argument("--until", metavar="DATE", help="with --from-log: cases predicted before this date")
    from .cli import add_model_option

    add_model_option(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--store", type=Path, default=None,
                   help="model store folder (default: $HOTLINE_MODEL_STORE or models/)")
    p.set_defaults(func=cmd_select)


def _date(raw: str | None, flag: str) -> datetime | None:
    if raw is None:
        return None
    from training.splits import parse_times

    parsed = parse_times([raw]).iloc[0]
    if pd.isna(parsed):
        raise ConfigError(f"{flag}: expected a date such as 2018-01-31, got {raw!r}")
    return parsed.to_pydatetime()


def cmd_select(args: argparse.Namespace) -> int:
    import json

    from classifier.store import ModelStore, default_store_path
    from training.data import read_table

    store = ModelStore(args.store if args.store is not None else default_store_path())
    model = store.load(args.model).model
    options: dict[str, Any] = {"targets": args.target, "measure": args.measure, "similarity": args.similarity,
                               "density": args.density}
    if args.data is not None:
        if not args.text:
            raise ConfigError("--data needs --text COLUMN (the column holding the complaint text)")
        df = read_table(args.data, encoding=args.encoding)
        for flag, col in (("--text", args.text), ("--id", args.id_column)):
            if col is not None and col not in df.columns:
                raise ConfigError(f"{flag}: column {col!r} not in {args.data}; its columns are {list(df.columns)}")
        has = df[args.text].map(lambda v: isinstance(v, str) and bool(v.strip()))
        rows = df[has]
        selection = select_cases(model, rows[args.text].tolist(), args.budget,
                                 ids=rows[args.id_column].tolist() if args.id_column else None, **options)
        # the input's spreadsheet row numbers, so a pick can be found in the file it came from
        selection.picks.insert(1, "row", [int(rows.index[i]) + 2 for i in selection.picks["position"]])
        if (~has).any():
            selection.notes.append(f"{int((~has).sum())} rows without text were not considered")
    else:
        from .feedback_cli import open_decision_log

        if args.from_log is not True:  # a URL, or a SQLite file's path
            args.log = args.from_log if "://" in args.from_log else f"sqlite:///{Path(args.from_log).resolve()}"
        log = open_decision_log(args)
        try:
            selection = select_from_log(model, log, args.budget, since=_date(args.since, "--since"),
                                        until=_date(args.until, "--until"), **options)
        finally:
            log.close()
    selection.picks = selection.picks.drop(columns=["position"])
    selection.to_csv(args.out)
    if args.json:
        print(json.dumps({"picks": len(selection.picks), "candidates": selection.candidates,
                          "collapsed": selection.collapsed, "budget": selection.budget, "out": str(args.out),
                          "notes": selection.notes}, ensure_ascii=False))
    else:
        print(selection.summary())
        print(f"wrote {args.out}: the reason for each pick, and an empty column per target to fill in",
              file=sys.stderr)
    return 0

