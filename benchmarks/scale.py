"""Training that scales (issue 17): the product, fastText and hashing + SGD on the same synthetic corpora.

    .venv/bin/python -m benchmarks.scale run --sizes 25000,100000            # all three systems, each size
    .venv/bin/python -m benchmarks.scale run --sizes 400000 --systems product
    .venv/bin/python -m benchmarks.scale report                              # BENCHMARKS.md section + chart

``run`` builds the corpora it needs (``benchmarks/scale_corpus.py``), then runs every (system, size) as a job in
its own process (``benchmarks/scale_systems.py``): wall time from reading the corpus to the saved model, peak
memory of the job and its worker processes (resident memory polled every 0.2 s from /proc, and the job's own
``ru_maxrss``: the larger is reported), the saved model's size, cold start (a fresh process loads the model
and predicts one text: median of 3), CPU seconds (the job's and its workers': what a quieter machine would
take), and accuracy on the fixed real test set; for the product also each
phase's time and peak memory.  Each result is added to ``benchmarks/out/scale/results.json`` (kept between
runs, one entry per label, system and size: a rerun replaces it), so sizes may be run at different times;
``--label`` names the product's code (``before`` for the code this work started from).  ``report`` renders
every entry.  Complaint text is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.run import _cpu
from benchmarks.scale_corpus import DEFAULT_OUT, corpus_path, ensure_corpora, parse_sizes, test_path
from benchmarks.scale_systems import FASTTEXT_SCALE_PARAMS, SGD_PARAMS, SYSTEMS
from classifier.phases import tree_rss_bytes

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
CHART = ROOT / "benchmarks" / "scale.svg"
COLD_STARTS = 3


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "classifier", "training"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _job(args: list[str]) -> tuple[dict[str, Any], int, float]:
    """Run one job; (its JSON result, peak bytes of it and its descendants, CPU seconds of it and of the worker
    processes it waited for)."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.scale_systems", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"job {' '.join(args[:3])} failed with status {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), max(peak[0], usage.ru_maxrss * 1024), cpu


def run_one(system: str, n: int, out: Path, label: str) -> dict[str, Any]:
    work = out / "work" / f"{label}-{system}-{n}"
    result, peak, cpu = _job(["fit", "--system", system, "--corpus", str(corpus_path(out, n)),
                              "--test", str(test_path(out)), "--work", str(work)])
    result["peak_gib"] = round(peak / 2**30, 3)
    result["cpu_s"] = round(cpu, 1)  # the whole job (scoring the test set included): load-independent
    colds = [_job(["cold-start", "--system", system, "--model", result["model_path"]])[0]
             for _ in range(COLD_STARTS)]
    result["cold_start_s"] = sorted(c["cold_start_s"] for c in colds)[COLD_STARTS // 2]
    result["load_s"] = sorted(c["load_s"] for c in colds)[COLD_STARTS // 2]
    subprocess.run(["rm", "-rf", str(work)], check=False)
    result.pop("model_path", None)
    result.update({"label": label if system == "product" else system, "commit": _git_commit(),
                   "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")})
    return result


def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def save_result(path: Path, result: dict[str, Any]) -> None:
    rows = [r for r in load_results(path) if (r["label"], r["texts"]) != (result["label"], result["texts"])]
    rows.append(result)
    rows.sort(key=lambda r: (r["label"], r["texts"]))
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


# -- the report -------------------------------------------------------------------------------------------------
def _versions() -> str:
    parts = [f"python {platform.python_version()}"]
    for dist in ("numpy", "scipy", "scikit-learn", "rjieba", "fasttext-wheel", "dask", "distributed"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


LABEL_ORDER = ("product", "before", "fasttext", "hashing-sgd")


def _label_key(label: str) -> tuple[int, str]:
    return (LABEL_ORDER.index(label) if label in LABEL_ORDER else len(LABEL_ORDER), label)


def render(rows: list[dict[str, Any]], command: str) -> str:
    labels = sorted({r["label"] for r in rows}, key=_label_key)
    sizes = sorted({r["texts"] for r in rows})
    by = {(r["label"], r["texts"]): r for r in rows}
    lines = [
        "## Training that scales (issue 17)", "",
        f"Command: `{command}` (then `.venv/bin/python -m benchmarks.scale report`) · "
        f"{_cpu()}, {os.cpu_count()} cores (shared machine) · {_versions()}", "",
        "Corpora: `benchmarks/scale_corpus.py` (each text a real training text of tipdm, THUCNews or Qingdao plus "
        "0-2 fragments of other real texts; one target, 26 classes); accuracy on the fixed real test set "
        "(the three evaluation splits, 12,531 texts). Each system and size runs in its own process: train s from "
        "reading the corpus to the saved model, peak GiB of the process and its workers, model MB on disk, cold "
        "start = load the saved model and predict one text in a fresh process (median of 3). `product` is this "
        "branch's code, `before` the code it started from (commit in the last column). fastText: "
        f"`{json.dumps(FASTTEXT_SCALE_PARAMS)}` over the product's jieba tokens; hashing-sgd: "
        f"`HashingVectorizer(2**20)` over word 1-2-grams + char 1-3-grams, `SGDClassifier({SGD_PARAMS})`.", "",
        "| texts | system | train s | train CPU s | peak GiB | model MB | cold start s | accuracy | features "
        "| commit, date |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sizes:
        for label in labels:
            r = by.get((label, n))
            if r is None:
                continue
            feats = f"{r['features']:,}" if r.get("features") else ""
            cpu = f"{r['train_cpu_s']:,.0f}" if r.get("train_cpu_s") else ""
            lines.append(f"| {n:,} | {label} | {r['train_s']:,.0f} | {cpu} | {r['peak_gib']:.2f} | "
                         f"{r['model_mb']:.1f} | {r['cold_start_s']:.2f} | {r['accuracy']:.4f} | {feats} | "
                         f"{r['commit']}, {r['date']} |")
    lines += ["", "![training time and peak memory against corpus size](benchmarks/scale.svg)", ""]
    lines += _phase_lines(rows, labels, sizes)
    lines += _target_lines(by, sizes)
    return "\n".join(lines) + "\n"


def _phase_lines(rows: list[dict[str, Any]], labels: list[str], sizes: list[int]) -> list[str]:
    out: list[str] = []
    for label in (x for x in labels if x in ("product", "before")):
        runs = [r for r in rows if r["label"] == label and r.get("phases")]
        if not runs:
            continue
        out += [f"### Where {label}'s training goes, by phase (wall seconds / CPU seconds / peak GiB)", ""]
        names: list[tuple[int, str]] = []
        for r in runs:
            for p in r["phases"]:
                if (p["depth"], p["phase"]) not in names:
                    names.append((p["depth"], p["phase"]))
        out.append("| phase | " + " | ".join(f"{r['texts']:,}" for r in runs) + " |")
        out.append("| --- |" + " --- |" * len(runs))
        for depth, name in names:
            cells = []
            for r in runs:
                ps = [p for p in r["phases"] if p["phase"] == name and p["depth"] == depth]
                cpu = [p.get("cpu_seconds") for p in ps]
                cpu_cell = f"{sum(cpu):,.1f}" if ps and None not in cpu else "–"
                cells.append(f"{sum(p['seconds'] for p in ps):,.1f} / {cpu_cell} / {max(p['peak_gib'] for p in ps):.2f}"
                             if ps else "")
            out.append(f"| {'&nbsp;&nbsp;' * depth}{name} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _target_lines(by: dict[tuple[str, int], dict[str, Any]], sizes: list[int]) -> list[str]:
    out = ["### Targets (issue 17)", ""]

    def mark(ok: bool) -> str:
        return "✅" if ok else "❌"

    for n in sizes:
        p, ft, hs, before = (by.get((x, n)) for x in ("product", "fasttext", "hashing-sgd", "before"))
        if p is None:
            continue
        checks = []
        if ft is not None and n in (100_000, 400_000):
            checks.append(f"train ≤ 1.5 × fastText: {p['train_s']:,.0f} s vs {1.5 * ft['train_s']:,.0f} s "
                          f"{mark(p['train_s'] <= 1.5 * ft['train_s'])}")
        if n == 400_000:
            checks.append(f"peak ≤ 3 GiB: {p['peak_gib']:.2f} {mark(p['peak_gib'] <= 3)}")
        if n >= 1_000_000:
            checks.append(f"peak {p['peak_gib']:.2f} GiB (< 20 GiB at 2,000,000)")
        checks.append(f"model ≤ 30 MB: {p['model_mb']:.1f} {mark(p['model_mb'] <= 30)}")
        checks.append(f"cold start ≤ 1 s: {p['cold_start_s']:.2f} {mark(p['cold_start_s'] <= 1)}")
        if before is not None:
            checks.append(f"accuracy ≥ before's {before['accuracy']:.4f}: {p['accuracy']:.4f} "
                          f"{mark(p['accuracy'] >= before['accuracy'])}")
        if hs is not None:
            checks.append(f"ahead of hashing + SGD ({hs['accuracy']:.4f}): {p['accuracy']:.4f} "
                          f"{mark(p['accuracy'] > hs['accuracy'])}")
        out.append(f"- {n:,} texts: " + "; ".join(checks))
    return out + [""]


def write_section(path: Path, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{START}\n{body}{END}{tail}"
    else:
        text = text.rstrip("\n") + f"\n\n{START}\n{body}{END}\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run systems on corpora of the given sizes")
    r.add_argument("--sizes", type=parse_sizes, default=parse_sizes("25000,100000"))
    r.add_argument("--systems", default=",".join(SYSTEMS))
    r.add_argument("--label", default="product", help="name of the product's code in the results (e.g. before)")
    for q in (r, sub.add_parser("report", help="write the BENCHMARKS.md section and the chart")):
        q.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpora, work files and results.json")
        q.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
        q.add_argument("--command-line", default=None, help="the run command to quote in the section")
    args = p.parse_args(argv)
    results = args.out / "results.json"
    if args.command == "run":
        systems = [s for s in args.systems.split(",") if s]
        unknown = set(systems) - set(SYSTEMS)
        if unknown:
            p.error(f"unknown system(s) {sorted(unknown)}; choose from {list(SYSTEMS)}")
        try:
            ensure_corpora(args.sizes, args.out)
        except FileNotFoundError as exc:
            print(f"nothing to run: {exc}", file=sys.stderr)
            return 1
        for n in args.sizes:
            for system in systems:
                t0 = time.perf_counter()
                result = run_one(system, n, args.out, args.label)
                save_result(results, result)
                print(f"{result['label']} {n:,}: train {result['train_s']:,.0f} s, peak {result['peak_gib']:.2f} GiB, "
                      f"model {result['model_mb']:.1f} MB, cold start {result['cold_start_s']:.2f} s, accuracy "
                      f"{result['accuracy']:.4f} ({time.perf_counter() - t0:,.0f} s)", file=sys.stderr, flush=True)
        return 0
    rows = load_results(results)
    if not rows:
        print(f"nothing to report: {results} holds no results; run `python -m benchmarks.scale run` first",
              file=sys.stderr)
        return 1
    from benchmarks.scale_chart import chart_svg

    CHART.write_text(chart_svg(rows), encoding="utf-8")
    command = args.command_line or ".venv/bin/python -m benchmarks.scale run --sizes " + ",".join(
        str(n) for n in sorted({r["texts"] for r in rows}))
    write_section(args.benchmarks, render(rows, command))
    print(f"wrote the scale section of {args.benchmarks} and {CHART}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
