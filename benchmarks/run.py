"""Accuracy and speed on real data, side by side with fastText and the plain scikit-learn baseline.

    .venv/bin/python -m benchmarks.run                 # everything; rewrites BENCHMARKS.md's accuracy section
    .venv/bin/python -m benchmarks.run --tasks thucnews --systems ours,fasttext-char --no-write

Every (system, data set) pair is fitted in a fresh process, so its peak memory is its own.  The data sets are
read from ``../shared/data`` (``--data``); a missing one is skipped and named in the output.  Complaint text is
never printed: only labels' counts and metrics are.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import re
import resource
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import DEFAULT_DATA, TASK_NAMES, Task, tasks_for_command
from benchmarks.peers import FASTTEXT_PARAMS, SYSTEMS, make_system

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
LATENCY_CALLS = 1000
LATENCY_TASK = "tipdm"  # single-text latency and training time are measured on the long messages
BATCH_TASK = "thucnews"  # batch throughput on short titles

# the evidence for the shipped defaults: ours with one group of settings changed, on every data set
CANDIDATES: dict[str, dict[str, Any]] = {
    "fusion off (one SVM per head)": {"model.fusion": "off"},
    "no lead blocks (lead_chars=0)": {"features.lead_chars": 0},
    "lead_chars=40": {"features.lead_chars": 40},
    "issue-2 settings (min_df=1, C=0.5)": {"features.min_df": 1, "model.C": 0.5},
    "C=0.5": {"model.C": 0.5},
    "C=2": {"model.C": 2.0},
    "class_weight=balanced": {"model.class_weight": "balanced"},
    "word unigrams only": {"features.word_ngram_range": (1, 1)},
    "char 1-2-grams": {"features.char_ngram_range": (1, 2)},
    "char 1-2-grams, C=2": {"features.char_ngram_range": (1, 2), "model.C": 2.0},
}

# the targets, checked in the report
TARGETS = {
    ("tipdm", "accuracy"): 0.935,
    ("tipdm", "macro_f1"): 0.925,
    ("thucnews", "accuracy"): 0.89,
    ("qingdao-agency", "accuracy"): 0.86,
    ("qingdao-agency", "top3_accuracy"): 0.97,
    ("qingdao-agency", "macro_f1"): 0.68,
}


# -- one job: fit one system on one task, in its own process --------------------------------------------------
def _job(system: str, task: Task, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    import os
    import tempfile

    from classifier.config import TrainingConfig
    from training.metrics import classification_metrics

    out: dict[str, Any] = {"system": system, "task": task.name}
    if updates is not None:  # a candidate default: ours with some settings changed, accuracy only
        model = make_system("ours", TrainingConfig().with_updates(**updates))
    else:
        model = make_system(system)
    t0 = time.perf_counter()
    model.fit(task.train_texts, task.train_labels)
    out["train_s"] = time.perf_counter() - t0
    scores = model.scores(task.test_texts)
    m = classification_metrics(task.test_labels, scores, list(model.classes_))
    out.update({k: m[k] for k in ("n", "accuracy", "macro_f1", "top3_accuracy")})
    fd, path = tempfile.mkstemp(suffix=".model")
    os.close(fd)
    try:
        model.save(path)
        out["size_mb"] = os.path.getsize(path) / 1e6
    finally:
        os.unlink(path)
    if updates is not None:
        pass
    elif task.name == LATENCY_TASK:
        out["latency"] = _latency(model, task.test_texts)
    if task.name == BATCH_TASK and updates is None:
        out["batch_per_s"] = _throughput(model, task.test_texts)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run_job(system: str, task: Task, updates: dict[str, Any] | None, conn: Any) -> None:
    try:
        conn.send(("ok", _job(system, task, updates)))
    except BaseException as exc:  # report it in the parent instead of hanging there
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        # joblib's reusable worker processes would otherwise keep this process from exiting
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


def _in_process(ctx: Any, system: str, task: Task, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one job in a fresh, non-daemonic process (so joblib may still use both cores inside it)."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_job, args=(system, task, updates, send))
    proc.start()
    send.close()
    status, payload = recv.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{system} on {task.name} failed: {payload}")
    return payload


def _latency(model: Any, texts: list[str]) -> dict[str, dict[str, float]]:
    """p50/p99 microseconds of the single-text path, for complaints cut to 30 and 500 characters."""
    result = {}
    for length in (30, 500):
        pool = [t[:length] for t in texts if len(t) >= length][:200]
        for t in pool[:20]:
            model.predict_one(t)  # warm-up: dictionaries, caches
        times = np.empty(LATENCY_CALLS)
        for i in range(LATENCY_CALLS):
            t = pool[i % len(pool)]
            t0 = time.perf_counter_ns()
            model.predict_one(t)
            times[i] = time.perf_counter_ns() - t0
        result[str(length)] = {"p50_us": float(np.percentile(times, 50) / 1e3),
                               "p99_us": float(np.percentile(times, 99) / 1e3)}
    return result


def _throughput(model: Any, texts: list[str], repeats: int = 3) -> float:
    """Texts per second through the batch path (median of ``repeats`` passes over the evaluation split)."""
    model.predict_batch(texts[:100])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict_batch(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return float(np.median(rates))


def _tokenization(tasks: list[Task]) -> dict[str, float]:
    """Segmentation speed (MB of normalized UTF-8 text per second, one process) for each segmenter."""
    from classifier.text import ComplaintTokenizer, normalize

    task = next((t for t in tasks if t.name == LATENCY_TASK), tasks[0])
    texts = [normalize(t) for t in task.train_texts]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    out = {}
    for segmenter in ("jieba", "rjieba"):
        try:
            tok = ComplaintTokenizer(segmenter=segmenter).warm_up()
        except ImportError:
            continue
        t0 = time.perf_counter()
        for t in texts:
            tok.cut(t)
        out[segmenter] = mb / (time.perf_counter() - t0)
    return out


# -- the report -------------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "scikit-learn", "jieba", "rjieba", "fasttext-wheel"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(
    results: list[dict[str, Any]],
    tokenization: dict[str, float],
    meta: dict[str, Any],
    candidates: list[dict[str, Any]] | None = None,
) -> str:
    from classifier.config import TrainingConfig

    lines = [
        "## Accuracy and speed on real data (issue 5)",
        "",
        f"Command: `{meta['command']}` · {meta['date']} · {meta['cpu']}, {meta['cores']} cores (shared machine) · "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"Ours = `ComplaintClassifier(TrainingConfig())` (defaults: `{_defaults(TrainingConfig())}`). "
        "fastText settings: "
        + "; ".join(f"{k} `{json.dumps(v)}`" for k, v in FASTTEXT_PARAMS.items())
        + ". Baseline = `TfidfVectorizer()` + `LinearSVC()` over space-joined jieba tokens. "
        "Every system sees the same normalized text and the publisher's splits; each is fitted in its own process.",
        "",
    ]
    for skip in meta["skipped"]:
        lines.append(f"Skipped: {skip}")
    if meta["skipped"]:
        lines.append("")
    lines += ["### Accuracy (evaluation split)", "",
              "| data set | train / test | classes | system | accuracy | macro-F1 | top-3 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r)
    for name, rows in by_task.items():
        best = {k: max(r[k] for r in rows) for k in ("accuracy", "macro_f1", "top3_accuracy")}
        for r in rows:
            cells = [f"**{r[k]:.4f}**" if r[k] == best[k] else f"{r[k]:.4f}"
                     for k in ("accuracy", "macro_f1", "top3_accuracy")]
            lines.append(f"| {name} | {r['n_train']:,} / {r['n']:,} | {r['n_classes']} | {r['system']} | "
                         + " | ".join(cells) + " |")
    lines += ["", "### Speed and size", "",
              f"Training seconds and model size are on {LATENCY_TASK} train; single-text latency is the in-process "
              f"single-request path (ours: `predict_details([text])`; fastText: `f.predict`; baseline: pipeline "
              f"`predict`) over {LATENCY_CALLS} calls on {LATENCY_TASK} dev messages cut to 30 and 500 characters; "
              f"batch is texts/s over the {BATCH_TASK} test titles (median of 3). Peak memory is the fitting "
              f"process's max RSS on {LATENCY_TASK}. Segmentation speed (normalized UTF-8, one process): "
              + ", ".join(f"{k} {v:.2f} MB/s" for k, v in tokenization.items())
              + " (fastText-word uses the same jieba tokens; fastText-char needs none).",
              "",
              "| system | train s | p50 / p99 µs, 30 chars | p50 / p99 µs, 500 chars | batch texts/s | size MB | "
              "peak MB |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for system in dict.fromkeys(r["system"] for r in results):
        lat = next((r for r in results if r["system"] == system and r["task"] == LATENCY_TASK), None)
        bat = next((r for r in results if r["system"] == system and r["task"] == BATCH_TASK), None)
        if lat is None and bat is None:
            continue
        l30 = lat["latency"]["30"] if lat else None
        l500 = lat["latency"]["500"] if lat else None
        lines.append(
            f"| {system} | {_f(lat, 'train_s', '{:.1f}')} | "
            + (f"{l30['p50_us']:.0f} / {l30['p99_us']:.0f}" if l30 else "–") + " | "
            + (f"{l500['p50_us']:.0f} / {l500['p99_us']:.0f}" if l500 else "–") + " | "
            + f"{_f(bat, 'batch_per_s', '{:,.0f}')} | {_f(lat, 'size_mb', '{:.1f}')} | {_f(lat, 'peak_mb', '{:.0f}')} |"
        )
    if candidates:
        lines += _candidate_lines(results, candidates)
    lines += ["", "### Targets (issue 5)", ""]
    lines += _target_lines(results)
    return "\n".join(lines) + "\n"


def _candidate_lines(results: list[dict[str, Any]], candidates: list[dict[str, Any]]) -> list[str]:
    """Accuracy / macro-F1 of ours with one change per row, beside the shipped defaults (the evidence)."""
    tasks = list(dict.fromkeys(r["task"] for r in candidates))
    shipped = {r["task"]: r for r in results if r["system"] == "ours"}
    rows = [("shipped defaults", shipped)] if shipped else []
    for label in dict.fromkeys(r["system"] for r in candidates):
        rows.append((label, {r["task"]: r for r in candidates if r["system"] == label}))
    lines = ["", "### Candidate defaults (ours with one change; accuracy / macro-F1)", "",
             "| settings | " + " | ".join(tasks) + " | mean |", "|" + " --- |" * (len(tasks) + 2)]
    for label, by_task in rows:
        cells, means = [], []
        for t in tasks:
            r = by_task.get(t)
            cells.append(f"{r['accuracy']:.4f} / {r['macro_f1']:.4f}" if r else "–")
            if r:
                means.append((r["accuracy"] + r["macro_f1"]) / 2)
        mean = f"{np.mean(means):.4f}" if means else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def _f(row: dict[str, Any] | None, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if row and key in row else "–"


def _defaults(cfg: Any) -> str:
    f, m = cfg.features, cfg.model
    return (f"word {f.word_ngram_range} + char {f.char_ngram_range}, min_df={f.min_df}, "
            f"char_weight={f.char_weight}, C={m.C}, class_weight={m.class_weight}, "
            f"calibration={m.calibration}/{m.calibration_folds} folds, fusion={m.fusion}")


def _target_lines(results: list[dict[str, Any]]) -> list[str]:
    ours = {r["task"]: r for r in results if r["system"] == "ours"}
    lines = []
    for (task, metric), floor in TARGETS.items():
        if task in ours:
            got = ours[task][metric]
            lines.append(f"- {task} {metric} ≥ {floor}: {got:.4f} {'✅' if got >= floor else '❌'}")
    for task, r in ours.items():
        peers = [p for p in results if p["task"] == task and p["system"] != "ours"]
        if peers:
            ahead = all(r["accuracy"] > p["accuracy"] and r["macro_f1"] > p["macro_f1"] for p in peers)
            lines.append(f"- {task}: ahead of every peer on accuracy and macro-F1: {'✅' if ahead else '❌'}")
    lat = ours.get(LATENCY_TASK)
    if lat:
        for length, limit in (("30", 300.0), ("500", 2000.0)):
            got = lat["latency"][length]["p50_us"]
            lines.append(f"- single-text p50 ({length} chars) ≤ {limit:.0f} µs: {got:.0f} "
                         f"{'✅' if got <= limit else '❌'}")
        ok = lat["train_s"] <= 15
        lines.append(f"- training on {LATENCY_TASK} ≤ 15 s: {lat['train_s']:.1f} {'✅' if ok else '❌'}")
        lines.append(f"- model ≤ 30 MB: {lat['size_mb']:.1f} {'✅' if lat['size_mb'] <= 30 else '❌'}")
    bat = ours.get(BATCH_TASK)
    if bat:
        got = bat["batch_per_s"]
        lines.append(f"- batch ≥ 10,000 titles/s: {got:,.0f} {'✅' if got >= 10_000 else '❌'}")
    return lines


def write_section(path: Path, body: str, date: str) -> None:
    """Replace the accuracy section with ``body``, keeping the previous run (without its own history) below."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    old, tail = rest.split(END, 1)
    old = old.split("\n### Previous run", 1)[0].strip()
    previous = ""
    if old and "Not measured yet" not in old:
        old_body = re.sub(r"^## .*\n", "", old, count=1)
        old_body = re.sub(r"^### ", "#### ", old_body, flags=re.M)
        previous = f"\n### Previous run\n\n{old_body.strip()}\n"
    path.write_text(f"{head}{START}\n{body}{previous}{END}{tail}", encoding="utf-8")


# -- command line ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding the real data sets")
    p.add_argument("--tasks", default=",".join(TASK_NAMES), help=f"comma-separated subset of {TASK_NAMES}")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    p.add_argument("--no-candidates", dest="candidates", action="store_false",
                   help="skip the candidate-defaults table (ours with one setting changed; ~4 minutes)")
    args = p.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s) {sorted(unknown)}; choose from {list(SYSTEMS)}")
    tasks, skipped = tasks_for_command(p, args.data, args.tasks, "the benchmark")
    if not tasks:
        return 1
    results = []
    ctx = mp.get_context("spawn")
    for task in tasks:
        for system in systems:
            print(f"{task.name} / {system} ...", file=sys.stderr, flush=True)
            r = _in_process(ctx, system, task)
            r.update(n_train=len(task.train_texts), n_classes=task.n_classes)
            print(f"  accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  top-3 {r['top3_accuracy']:.4f}"
                  f"  train {r['train_s']:.1f} s", file=sys.stderr, flush=True)
            results.append(r)
    candidates = []
    for label, updates in CANDIDATES.items() if args.candidates else ():
        for task in tasks:
            print(f"{task.name} / candidate {label} ...", file=sys.stderr, flush=True)
            r = _in_process(ctx, label, task, updates)
            print(f"  accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}", file=sys.stderr, flush=True)
            candidates.append(r)
    tokenization = _tokenization(tasks)
    meta = {
        "command": ".venv/bin/python -m benchmarks.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                          if (argv if argv is not None else sys.argv[1:]) else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(),
        "cores": mp.cpu_count(),
        "versions": _versions(),
        "skipped": skipped,
    }
    body = render(results, tokenization, meta, candidates)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "tokenization": tokenization, "results": results},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    if args.no_write:
        print(body)
    else:
        write_section(args.out, body, meta["date"])
        print(f"wrote the accuracy section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
