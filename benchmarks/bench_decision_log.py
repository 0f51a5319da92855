"""Decision log benchmark (issue 13).

    .venv/bin/python -m benchmarks.bench_decision_log [--parts quality,write-cost] [--decisions 1000000]
        [--days 30] [--corrected 0.3] [--repeats 3] [--write-decisions 100000] [--rounds 2] [--db PATH]
        [--json out.json]

Part ``quality``: one million logged decisions over 30 days.  Synthesizes ``--decisions`` decisions (two
targets: 20 categories, 300 agencies; two model versions, the second serving the last third of the days; a
quarter sent to review; a tenth with the drift sample) into a SQLite file through ``DecisionLog.write_decisions``
in batches of 10,000, and corrections for ``--corrected`` of the cases through ``DecisionLog.add_corrections``
(in batches of 10,000: 85 % confirm the agency, 1 % name an agency the model does not know; dispatchers,
agency returns and audits), then times, each the median of ``--repeats`` runs:

- ``live_quality`` over the 7- and 30-day windows (what ``GET /quality`` answers; target <= 2 s);
- ``hotline report --live --since <30 days ago> --out DIR`` as a user runs it (a new process: imports, the
  queries, the HTML and JSON; target <= 30 s), with a store holding the two versions' manifests for the PSI;

and reports the SQLite file size per million decisions.

Part ``write-cost``: what the quality indexes cost the writers: ``--write-decisions`` decisions and their
corrections written into a log at the head schema (0004: hourly tallies, a partial index of the corrected
predictions), one with 0003's index over every prediction added, and one with no quality index, alternately,
``--rounds`` times.

No real text: the log holds labels and numbers only.
Prints a Markdown block for BENCHMARKS.md; ``--json`` also writes the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live.log import Correction, Decision, DecisionLog, TargetDecision  # noqa: E402
from live.quality import live_quality  # noqa: E402

BATCH = 10_000
N_CATEGORIES = 20
N_AGENCIES = 300
NEW_AGENCY = "新成立的市数据局"
VERSIONS = ("20261101-000000.000-aaaaaa", "20261120-000000.000-bbbbbb")


def labels() -> dict[str, list[str]]:
    return {"category": [f"类别{i:02d}" for i in range(N_CATEGORIES)],
            "agency": [f"单位{i:03d}" for i in range(N_AGENCIES)]}


def _skewed(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` draws from ``k`` classes with a long tail (Zipf-like weights), as hotline labels are."""
    weights = 1.0 / np.arange(1, k + 1) ** 0.9
    return rng.choice(k, size=n, p=weights / weights.sum())


def synthesize(decision_log: DecisionLog, n: int, *, days: int = 30, corrected: float = 0.3, seed: int = 0,
               now: datetime | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fill the log with ``n`` decisions over ``days`` days before ``now`` and corrections for a share
    ``corrected`` of them; returns what was written and how long it took."""
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    names = labels()
    known = {t: set(v) for t, v in names.items()}
    start = now - timedelta(days=days)
    offsets = np.sort(rng.uniform(0, days * 86400 - 3600, size=n))  # seconds after start, oldest first
    switch = days * 86400 * 2 / 3  # the second version serves the last third
    cat = _skewed(rng, n, N_CATEGORIES)
    agency = _skewed(rng, n, N_AGENCIES)
    cat_score = rng.beta(6, 1.5, size=n)
    agency_score = rng.beta(4, 2, size=n)
    drift = rng.random(n) < 0.1
    n_tokens = rng.integers(10, 80, size=n)
    n_unseen = rng.binomial(n_tokens, 0.03)
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        batch = []
        for i in range(lo, min(n, lo + BATCH)):
            review_c, review_a = bool(cat_score[i] < 0.5), bool(agency_score[i] < 0.5)
            batch.append(Decision(
                case_id=f"WO{i:09d}", request_id=f"r{i:012x}",
                model_version=VERSIONS[int(offsets[i] >= switch)], needs_review=review_c or review_a,
                labels=(TargetDecision("category", names["category"][cat[i]], float(cat_score[i]), review_c),
                        TargetDecision("agency", names["agency"][agency[i]], float(agency_score[i]), review_a)),
                created_at=start + timedelta(seconds=float(offsets[i])), routing_path="directory",
                place_source="text", n_tokens=int(n_tokens[i]) if drift[i] else None,
                n_unseen=int(n_unseen[i]) if drift[i] else None))
        decision_log.write_decisions(batch)
        if progress and (lo // BATCH) % 10 == 0:
            progress(f"decisions {lo + len(batch):,}/{n:,}")
    write_s = time.perf_counter() - t0

    chosen = np.flatnonzero(rng.random(n) < corrected)
    sources = rng.choice(["dispatcher", "agency_return", "audit"], size=len(chosen), p=[0.8, 0.15, 0.05])
    right_agency = rng.random(len(chosen)) < 0.85
    right_category = rng.random(len(chosen)) < 0.93
    new = rng.random(len(chosen)) < 0.01
    other_agency = _skewed(rng, len(chosen), N_AGENCIES)
    other_cat = rng.integers(0, N_CATEGORIES, size=len(chosen))
    delay = rng.uniform(60, 2 * 86400, size=len(chosen))
    stored = 0
    t0 = time.perf_counter()
    for lo in range(0, len(chosen), BATCH):
        batch_c = []
        for k in range(lo, min(len(chosen), lo + BATCH)):
            i = int(chosen[k])
            a = (NEW_AGENCY if new[k] else names["agency"][agency[i] if right_agency[k] else other_agency[k]])
            c = names["category"][cat[i] if right_category[k] else other_cat[k]]
            when = min(now, start + timedelta(seconds=float(offsets[i] + delay[k])))
            batch_c.append(Correction(case_id=f"WO{i:09d}", labels={"category": c, "agency": a},
                                      source=str(sources[k]), corrected_at=when))
        results = decision_log.add_corrections(batch_c, known, now=now)
        stored += sum(1 for r in results if not isinstance(r, Exception))
        if progress and (lo // BATCH) % 10 == 0:
            progress(f"corrections {lo + len(batch_c):,}/{len(chosen):,}")
    correct_s = time.perf_counter() - t0
    return {"decisions": n, "corrections": stored, "days": days, "write_s": write_s, "correct_s": correct_s,
            "now": now.isoformat()}


def fake_store(path: Path) -> Path:
    """A model store holding only the two versions' manifests (their training label mixes, for the PSI)."""
    rng = np.random.default_rng(1)
    names = labels()
    for v in VERSIONS:
        mix = {t: {label: int(c) for label, c in zip(names[t], np.bincount(_skewed(rng, 20_000, len(names[t])),
                                                                           minlength=len(names[t])))}
               for t in names}
        (path / v).mkdir(parents=True, exist_ok=True)
        (path / v / "manifest.json").write_text(json.dumps({"version": v, "files": {}, "targets": list(names),
                                                            "labels": mix}, ensure_ascii=False), encoding="utf-8")
    (path / "CURRENT").write_text(VERSIONS[-1], encoding="utf-8")
    return path


def file_size(db: Path) -> int:
    """The SQLite file's size once its write-ahead log is folded in (what the data takes on disk)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], list[float]]:
    """Median wall time, the wall times, and the CPU seconds of each run (this process's and its children's: on a
    shared machine the CPU time says what the run costs, the wall time what the load made of it)."""
    import resource

    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(time.process_time() - c0 + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(times), times, cpu


def run_quality(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-decision-log-"))
    db = Path(args.db) if args.db else tmp / "decisions.sqlite"
    url = f"sqlite:///{db}"
    now = datetime.now(UTC).replace(microsecond=0)
    decision_log = DecisionLog(url)
    if decision_log.counts()["decisions"] == 0:
        facts = synthesize(decision_log, args.decisions, days=args.days, corrected=args.corrected, now=now,
                           progress=log)
    else:  # an existing --db: reuse it (its decisions end when it was written)
        facts = {"decisions": decision_log.counts()["decisions"], "corrections": decision_log.counts()["corrections"],
                 "days": args.days, "reused": str(db)}
    counts = decision_log.counts()
    with decision_log.engine.connect() as conn:
        newest = conn.exec_driver_sql("SELECT max(created_at) FROM decisions").scalar_one()
    newest_dt = datetime.fromisoformat(str(newest)).replace(tzinfo=UTC)
    quality_now = newest_dt + timedelta(minutes=1)
    size = file_size(db)
    log(f"log written: {counts}; {size / 1e6:.0f} MB; timing live_quality")
    store = fake_store(tmp / "store")
    from classifier.store import ModelStore
    from live.quality import training_mix

    mixes = {v: training_mix(ModelStore(store).manifest(v)) for v in VERSIONS}
    quality_s, quality_runs, quality_cpu = _median_time(
        lambda: live_quality(decision_log, now=quality_now, mixes=mixes), args.repeats)
    since = (quality_now - timedelta(days=args.days)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    until = quality_now.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    command = [sys.executable, "-m", "training.cli", "report", "--live", "--since", since, "--until", until,
               "--log", url, "--store", str(store), "--out", str(tmp / "live-report")]
    log("timing hotline report --live")

    def report() -> None:
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    report_s, report_runs, report_cpu = _median_time(report, args.repeats)
    page = tmp / "live-report" / "live.html"
    decision_log.close()
    return {**facts, "counts": counts, "sqlite_bytes": size,
            "sqlite_mb_per_million": size / 1e6 / (counts["decisions"] / 1e6),
            "live_quality_s": quality_s, "live_quality_runs": quality_runs, "live_quality_cpu": quality_cpu,
            "report_s": report_s, "report_runs": report_runs, "report_cpu": report_cpu,
            "report_html_kb": page.stat().st_size / 1024 if page.exists() else None,
            "db": str(db), "command": "hotline report --live --since <30 days before> --until <newest + 1 min> "
                                      "--log sqlite:///... --store <manifests> --out DIR"}


# the write-cost part's logs: the schema at its head, the same with migration 0003's index over every prediction
# (what 0004 replaced by tallies), and with no quality index at all (the floor)
WRITE_COST_VARIANTS = {
    "0004 (tallies, ix_predictions_corrected partial, ix_decisions_quality)": [],
    "0004 + 0003's ix_predictions_quality over every prediction": [
        "CREATE INDEX ix_predictions_quality ON predictions (model_version, target, label, needs_review, "
        "truth_known, truth, truth_source, created_at)"],
    "no quality index (floor)": ["DROP INDEX ix_predictions_corrected", "DROP INDEX ix_decisions_quality"],
}


def run_write_cost(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """What the quality indexes cost the writers: the same decisions and corrections written into a log of each
    of ``WRITE_COST_VARIANTS``, alternately (``--rounds`` each), in batches of 10,000."""
    rates: dict[str, dict[str, list[float]]] = {v: {"decisions": [], "corrections": []} for v in WRITE_COST_VARIANTS}
    sizes: dict[str, int] = {}
    for k in range(args.rounds):
        for variant, statements in WRITE_COST_VARIANTS.items():
            db = Path(tempfile.mkdtemp(prefix="bench-write-")) / "decisions.sqlite"
            decision_log = DecisionLog(f"sqlite:///{db}")
            with decision_log.engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
            facts = synthesize(decision_log, args.write_decisions, corrected=args.corrected, seed=k)
            rates[variant]["decisions"].append(facts["decisions"] / facts["write_s"])
            rates[variant]["corrections"].append(facts["corrections"] / facts["correct_s"])
            decision_log.close()
            sizes[variant] = file_size(db)
            log(f"round {k + 1}, {variant}: {rates[variant]['decisions'][-1]:,.0f} decisions/s, "
                f"{rates[variant]['corrections'][-1]:,.0f} corrections/s")
    return {"decisions": args.write_decisions, "rounds": args.rounds, "corrected": args.corrected,
            "median": {r: {w: statistics.median(v) for w, v in per.items()} for r, per in rates.items()},
            "runs": rates, "sqlite_bytes": sizes}


PARTS: dict[str, Callable[[argparse.Namespace, Callable[[str], None]], dict[str, Any]]] = {
    "quality": run_quality, "write-cost": run_write_cost}


def machine() -> dict[str, Any]:
    import sqlite3

    return {"cores": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "versions": {p: version(p) for p in ("sqlalchemy", "alembic", "pandas", "numpy")},
            "load_average": os.getloadavg()}


def render(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [f"Command: `{command}`", ""]
    q = results.get("quality")
    if q:
        lines += [
            "| measurement | result | target |",
            "|---|---|---|",
            f"| decisions / predictions / corrections (case x target) in the log | {q['counts']['decisions']:,} / "
            f"{q['counts']['predictions']:,} / {q['counts']['corrections']:,} | |",
            f"| `live_quality` (7 + 30 days, 2 versions, 2 targets), median of {len(q['live_quality_runs'])}: "
            f"wall (CPU) | {q['live_quality_s']:.2f} s ({statistics.median(q['live_quality_cpu']):.2f} s) | ≤ 2 s |",
            f"| `hotline report --live` over 30 days (a new process), median of {len(q['report_runs'])}: wall (CPU) | "
            f"{q['report_s']:.1f} s ({statistics.median(q['report_cpu']):.1f} s) | ≤ 30 s |",
            f"| SQLite file per million decisions (2 targets, no text) | {q['sqlite_mb_per_million']:.0f} MB | |",
        ]
        if "write_s" in q:
            lines.append(f"| filling it: decisions (batches of {BATCH:,}) / corrections (batches of {BATCH:,}) | "
                         f"{q['decisions'] / q['write_s']:,.0f} decisions/s / "
                         f"{q['corrections'] / max(q['correct_s'], 1e-9):,.0f} corrections/s | |")
    w = results.get("write-cost")
    if w:
        floor = w["median"][list(WRITE_COST_VARIANTS)[-1]]
        lines += ["", f"Write cost of the quality indexes ({w['decisions']:,} decisions, corrections for "
                  f"{100 * w['corrected']:.0f} % of them, median of {w['rounds']} alternating rounds):", "",
                  "| schema | decisions/s (/ floor) | corrections/s (/ floor) | file |", "|---|---|---|---|"]
        for variant, rate in w["median"].items():
            lines.append(f"| {variant} | {rate['decisions']:,.0f} ({rate['decisions'] / floor['decisions']:.2f}) | "
                         f"{rate['corrections']:,.0f} ({rate['corrections'] / floor['corrections']:.2f}) | "
                         f"{w['sqlite_bytes'][variant] / 1e6:.0f} MB |")
    lines += ["", f"Machine: {m['cores']} cores (load average {', '.join(f'{x:.1f}' for x in m['load_average'])} "
              f"at the end); Python {m['python']}, SQLite {m['sqlite']}, "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="quality", help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--decisions", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--corrected", type=float, default=0.3, help="share of the cases that get a correction")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write-decisions", type=int, default=100_000, help="decisions per log of the write-cost part")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the write-cost part")
    p.add_argument("--db", help="SQLite file to fill (or reuse when it holds decisions); default: a temp file")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    args = p.parse_args(argv)
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {list(PARTS)}")

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {part: PARTS[part](args, log) for part in parts}
    results["machine"] = machine()
    given = argv if argv is not None else sys.argv[1:]
    print(render(results, ".venv/bin/python -m benchmarks.bench_decision_log" + (" " + " ".join(given) if given
                                                                                 else "")))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
