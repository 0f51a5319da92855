"""The decision log's cost to the service (issue 13), over loopback with wrk, logging on and off in one run.

    apt-get install -y wrk
    .venv/bin/python -m benchmarks.bench_live_service [--duration 10] [--repeats 5] [--case-ids increasing|none]
        [--json out.json]

- ``POST /predict`` (50-character demo complaints, each request with a new case id: ``--case-ids``) at
  concurrency 16, one worker, with the decision log on (SQLite, the default settings) and off
  (``HOTLINE_DECISION_LOG=false``).  Each of the ``--repeats`` rounds starts a fresh server of each kind, one
  after the other in alternating order, warms it up and times it: the machine's drift hits both alike, and so
  does the luck of a process (two server processes of the same code differ in CPU per request by up to ~15 %
  for as long as they run, more than the log costs, so a pair of long-lived servers measures them more than
  the log).  Medians of requests/s, p99 and the server's CPU per request (its main thread and the rest: the
  log's writer thread),
  their ratios, and the median of the rounds' paired p99 differences;
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


def predict_script(texts: list[str], path: Path, case_ids: str = "increasing") -> Path:
    """A wrk script posting the texts in turn.  ``case_ids``: "increasing" gives each request a new case id that
    sorts after the ones before it, as a work-order system's numbers do (``WO`` + the second + a per-thread
    counter + the thread); "none" sends none (the service logs the request id, which also sorts by time)."""
    if case_ids == "none":
        return lua_script([json.dumps({"text": t}, ensure_ascii=False) for t in texts], path)
    quoted = [json.dumps(t, ensure_ascii=False) for t in texts]
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"', "texts = {"]
    lines += [f"  [==[{q}]==]," for q in quoted]
    lines += ["}", "i = 0", "n = 0", "tag = 0", "local threads = 0",
              "setup = function(thread)", "  threads = threads + 1", '  thread:set("tag", threads)', "end",
              "request = function()", "  i = i % #texts + 1", "  n = n + 1",
              """  local body = string.format('{"text": %s, "case_id": "WO%010d%09d%d"}',""",
              "                             texts[i], os.time(), n, tag)",
              "  return wrk.format(nil, nil, nil, body)", "end"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of a process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def run(server: Server, script: Path, duration: int) -> dict[str, Any]:
    pid = server.proc.pid
    before, threads_before = cpu_seconds(pid), thread_cpu_seconds(pid)
    out = wrk(server.url + "/predict", script, 16, duration)
    answered = out["rps"] * duration
    out["cpu_us_per_request"] = (cpu_seconds(pid) - before) / answered * 1e6
    used = {t: c - threads_before.get(t, 0.0) for t, c in thread_cpu_seconds(pid).items()}
    # the main thread (the event loop, where predictions run) is the process's own id
    out["main_thread_cpu_us_per_request"] = used.get(pid, 0.0) / answered * 1e6
    out["other_threads_cpu_us_per_request"] = sum(c for t, c in used.items() if t != pid) / answered * 1e6
    return out


def predict_rounds(store: Path, work: Path, script: Path, repeats: int, duration: int) -> dict[str, Any]:
    """Fresh off and on servers each round, in alternating order (see the module's docstring)."""
    modes = ("off", "on")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    lost = 0.0
    db = work / "predict.sqlite"
    for r in range(repeats):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            server = start(store, work / f"server-{r}-{mode}.log", mode == "on", db)
            try:
                wrk(server.url + "/predict", script, 16, 3)  # warm-up
                runs[mode].append(run(server, script, duration))
                if mode == "on":
                    lost += sum(float(ln.split()[-1]) for ln in httpx.get(server.url + "/metrics").text.splitlines()
                                if ln.startswith("hotline_decision_log_lost_total"))
            finally:
                server.stop()
    written = DecisionLog(f"sqlite:///{db}").counts()["decisions"]
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "main_thread_cpu_us_per_request",
            "other_threads_cpu_us_per_request")
    med = {m: {k: statistics.median(x[k] for x in rs) for k in keys} for m, rs in runs.items()}
    paired = [on["p99_ms"] - off["p99_ms"] for on, off in zip(runs["on"], runs["off"], strict=True)]
    return {"median": med, "runs": runs, "paired_p99_diff_ms": paired,
            "paired_p99_diff_median_ms": statistics.median(paired), "decisions_written": written,
            "decisions_lost": lost, "requests_answered_on": sum(x["rps"] * duration for x in runs["on"])}


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
    parser.add_argument("--repeats", type=int, default=5, help="rounds: a fresh off and a fresh on server each")
    parser.add_argument("--case-ids", choices=("increasing", "none"), default="increasing",
                        help="each request's case id (see predict_script)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    store = work / "store"
    print(f"training the demo model into {store} ...", file=sys.stderr)
    ensure_demo_model(ModelStore(store))
    script = predict_script(complaints(), work / "predict.lua", args.case_ids)
    pr = predict_rounds(store, work, script, args.repeats, args.duration)
    med = pr["median"]
    print("feedback batches ...", file=sys.stderr)
    fb = feedback_rate(store, work)
    results = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg(),
                    "versions": {p: version(p) for p in ("fastapi", "uvicorn", "sqlalchemy", "scikit-learn")}},
        "predict_c16": pr, "feedback": fb,
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    off = med["off"]
    rows = "\n".join(f"| decision log {m} | {r['rps']:,.0f} ({r['rps'] / off['rps']:.3f}) | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} ({r['p99_ms'] - off['p99_ms']:+.2f}) | {r['cpu_us_per_request']:.0f} "
                     f"({r['cpu_us_per_request'] / off['cpu_us_per_request']:.3f}) | "
                     f"{r['main_thread_cpu_us_per_request']:.0f} | {r['other_threads_cpu_us_per_request']:.0f} |"
                     for m, r in med.items())
    header = (f"| /predict, concurrency 16, 1 worker (median of {args.repeats} rounds of {args.duration} s, fresh "
              "servers) | requests/s (/ off) | p50 ms | p99 ms (- off) | server CPU µs per request (/ off) "
              "| main thread | other threads |")
    paired = ", ".join(f"{d:+.2f}" for d in pr["paired_p99_diff_ms"])
    print(f"""
{header}
| --- | --- | --- | --- | --- | --- | --- |
{rows}

p99 on − off in each round: {paired} ms; median **{pr['paired_p99_diff_median_ms']:+.2f} ms**.
Decisions written while logging was on: {pr['decisions_written']:,} (wrk was answered about
{pr['requests_answered_on']:,.0f} requests in the timed runs, plus the warm-ups); lost (hotline_decision_log_lost_total,
summed over the servers): {pr['decisions_lost']:.0f}.

`/feedback/batch`: {fb['corrections']:,} corrections in batches of {fb['batch']} from {fb['clients']} clients into a
log of {fb['decisions_in_log']:,} decisions: **{fb['per_s']:,.0f} corrections/s** ({fb['seconds']:.1f} s).
"""
          )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
