"""The decision log's cost to the service (issue 13), over loopback with wrk, logging on and off in one run.

    apt-get install -y wrk
    .venv/bin/python -m benchmarks.bench_live_service [--duration 10] [--repeats 5] [--json out.json]

- ``POST /predict`` (50-character demo complaints, each request with its own case id) at concurrency 16, one
  worker, with the decision log on (SQLite beside the store, the default) and off (``HOTLINE_DECISION_LOG=false``);
  the runs alternate off/on ``--repeats`` times so that the machine's drift hits both alike; medians of
  requests/s and p99, and their ratio;
- ``POST /feedback/batch`` with 100 corrections per request (4 clients) into a log holding 50,000 decisions:
  corrections stored per second on SQLite.

Texts are the bundled demo complaints; none is printed.  Prints a Markdown block for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_serve import Server, complaints, lua_script, wrk
from classifier.store import ModelStore
from live.log import Decision, DecisionLog, TargetDecision
from training.demo import ensure_demo_model


def predict_script(texts: list[str], path: Path) -> Path:
    bodies = [json.dumps({"text": t, "case_id": f"BENCH-{i}"}, ensure_ascii=False) for i, t in enumerate(texts)]
    return lua_script(bodies, path)


def start(store: Path, log_path: Path, logging_on: bool, db: Path, drift_sample: float = 0.02) -> Server:
    os.environ["HOTLINE_DECISION_LOG"] = "true" if logging_on else "false"
    os.environ["HOTLINE_DECISION_LOG_URL"] = f"sqlite:///{db}"
    os.environ["HOTLINE_DECISION_LOG_DRIFT_SAMPLE"] = str(drift_sample)
    return Server(store, 1, log_path)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads (seconds): the cost of the work whatever else the shared
    machine runs, where requests/s also measures how much CPU the process got."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(server: Server, script: Path, duration: int) -> dict[str, Any]:
    before = cpu_seconds(server.proc.pid)
    out = wrk(server.url + "/predict", script, 16, duration)
    out["cpu_us_per_request"] = (cpu_seconds(server.proc.pid) - before) / (out["rps"] * duration) * 1e6
    return out


def feedback_rate(store: Path, work: Path, n_cases: int = 50_000, clients: int = 4, batch: int = 100) -> dict:
    db = work / "feedback.sqlite"
    dlog = DecisionLog(f"sqlite:///{db}")
    version_id = ModelStore(store).current() or "bench"
    labels = ModelStore(store).load().model
    categories = labels.classes("category")
    for start_i in range(0, n_cases, 5_000):
        dlog.write_decisions([Decision(case_id=f"C-{i}", request_id="bench", model_version=version_id,
                                       needs_review=False,
                                       labels=(TargetDecision("category", categories[i % len(categories)], 0.9,
                                                              False),))
                              for i in range(start_i, start_i + 5_000)])
    s = start(store, work / "feedback-server.log", True, db)
    bodies = [{"items": [{"case_id": f"C-{i}", "labels": {"category": categories[(i + 1) % len(categories)]},
                          "source": "dispatcher"} for i in range(k, k + batch)]} for k in range(0, n_cases, batch)]
    stored = [0] * clients
    try:
        t0 = time.perf_counter()

        def client(c: int) -> None:
            with httpx.Client(base_url=s.url, timeout=60) as http:
                for body in bodies[c::clients]:
                    r = http.post("/feedback/batch", json=body)
                    r.raise_for_status()
                    stored[c] += r.json()["stored"]

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        s.stop()
    return {"corrections": sum(stored), "seconds": elapsed, "per_s": sum(stored) / elapsed, "batch": batch,
            "clients": clients, "decisions_in_log": n_cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=5, help="off/on pairs of wrk runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    store = work / "store"
    print(f"training the demo model into {store} ...", file=sys.stderr)
    ensure_demo_model(ModelStore(store))
    script = predict_script(complaints(), work / "predict.lua")
    modes = ("off", "on", "on, no drift sample")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    servers = {mode: start(store, work / f"server-{i}.log", mode != "off", work / f"predict-{i}.sqlite",
                           0.0 if "no drift" in mode else 0.02) for i, mode in enumerate(modes)}
    try:
        for s in servers.values():
            wrk(s.url + "/predict", script, 16, 3)  # warm-up
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(run(servers[mode], script, args.duration))
        logged = httpx.get(servers["on"].url + "/metrics").text
    finally:
        for s in servers.values():
            s.stop()
    written = DecisionLog(f"sqlite:///{work / 'predict-1.sqlite'}").counts()["decisions"]
    sent = sum(r["rps"] * args.duration for r in runs["on"])
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")}
           for m, rs in runs.items()}
    print("feedback batches ...", file=sys.stderr)
    fb = feedback_rate(store, work)
    results = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg(),
                    "versions": {p: version(p) for p in ("fastapi", "uvicorn", "sqlalchemy", "scikit-learn")}},
        "predict_c16": med, "runs": runs, "decisions_written": written, "requests_sent_approx": sent,
        "lost_metric_line": [ln for ln in logged.splitlines() if ln.startswith("hotline_decision_log_lost_total")],
        "feedback": fb,
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    off = med["off"]
    rows = "\n".join(f"| decision log {m} | {r['rps']:,.0f} ({r['rps'] / off['rps']:.3f}) | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} ({r['p99_ms'] - off['p99_ms']:+.2f}) | {r['cpu_us_per_request']:.0f} "
                     f"({r['cpu_us_per_request'] / off['cpu_us_per_request']:.3f}) |" for m, r in med.items())
    header = (f"| /predict, concurrency 16, 1 worker (median of {args.repeats} alternating {args.duration} s runs) "
              "| requests/s (/ off) | p50 ms | p99 ms (- off) | server CPU µs per request (/ off) |")
    print(f"""
{header}
| --- | --- | --- | --- | --- |
{rows}

Decisions written while logging was on: {written:,} (wrk sent about {sent:,.0f} requests in the timed runs, plus
the warm-up); {results['lost_metric_line']}.

`/feedback/batch`: {fb['corrections']:,} corrections in batches of {fb['batch']} from {fb['clients']} clients into a
log of {fb['decisions_in_log']:,} decisions: **{fb['per_s']:,.0f} corrections/s** ({fb['seconds']:.1f} s).
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
