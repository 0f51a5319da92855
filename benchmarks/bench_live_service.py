"""The decision log's cost to the service (issue 13), over loopback with wrk, logging on and off in one run.

    apt-get install -y wrk
    .venv/bin/python -m benchmarks.bench_live_service [--duration 10] [--repeats 5] [--case-ids increasing|none]
        [--modes off,on[,on-thread]] [--json out.json]

- ``POST /predict`` (50-character demo complaints, each request with a new case id: ``--case-ids``) at
  concurrency 16, one worker, with the decision log off (``HOTLINE_DECISION_LOG=false``) and on (SQLite, the
  default settings: the writer in a child process; ``on-thread``: the writer as a thread of the worker,
  ``HOTLINE_DECISION_LOG_WRITER=thread``).  Each of the ``--repeats`` rounds starts a fresh server of each kind,
  one after the other in rotating order, warms it up and times it: the machine's drift hits all alike, and so
  does the luck of a process (two server processes of the same code differ in CPU per request by up to ~15 %
  for as long as they run, more than the log costs, so a pair of long-lived servers measures them more than
  the log).  Medians of requests/s, p99 and the server's CPU per request (its main thread, its other threads,
  and its child processes: the log's writer process), their ratios, and the median of the rounds' paired p99
  differences;
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


# a server kind: the decision log off, on with its writer in a child process (the default), on with its writer as
# a thread of the worker (HOTLINE_DECISION_LOG_WRITER=thread)
MODES = {"off": None, "on": "process", "on-thread": "thread"}


def start(store: Path, log_path: Path, logging_on: bool, db: Path, drift_sample: float = 0.02,
          writer: str = "process") -> Server:
    os.environ["HOTLINE_DECISION_LOG"] = "true" if logging_on else "false"
    os.environ["HOTLINE_DECISION_LOG_URL"] = f"sqlite:///{db}"
    os.environ["HOTLINE_DECISION_LOG_DRIFT_SAMPLE"] = str(drift_sample)
    os.environ["HOTLINE_DECISION_LOG_WRITER"] = writer
    return Server(store, 1, log_path)


def descendants(pid: int) -> list[int]:
    """The processes a process started, and theirs (the decision log's writer process)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += [int(child), *descendants(int(child))]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


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
    children = descendants(pid)  # started by the warm-up, if the server starts any
    before, threads_before = cpu_seconds(pid), thread_cpu_seconds(pid)
    children_before = sum(cpu_seconds(c) for c in children)
    out = wrk(server.url + "/predict", script, 16, duration)
    answered = out["rps"] * duration
    out["cpu_us_per_request"] = (cpu_seconds(pid) - before) / answered * 1e6
    used = {t: c - threads_before.get(t, 0.0) for t, c in thread_cpu_seconds(pid).items()}
    # the main thread (the event loop, where predictions run) is the process's own id
    out["main_thread_cpu_us_per_request"] = used.get(pid, 0.0) / answered * 1e6
    out["other_threads_cpu_us_per_request"] = sum(c for t, c in used.items() if t != pid) / answered * 1e6
    out["child_processes_cpu_us_per_request"] = (sum(cpu_seconds(c) for c in children if Path(f"/proc/{c}").exists())
                                                 - children_before) / answered * 1e6
    out["cpu_us_per_request"] += out["child_processes_cpu_us_per_request"]
    return out


def predict_rounds(store: Path, work: Path, script: Path, repeats: int, duration: int,
                   modes: tuple[str, ...] = ("off", "on")) -> dict[str, Any]:
    """Fresh servers of each kind (``MODES``) each round, in rotating order (see the module's docstring)."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    lost = 0.0
    db = work / "predict.sqlite"
    for r in range(repeats):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for mode in order if r % 2 == 0 else order[::-1]:
            writer = MODES[mode]
            server = start(store, work / f"server-{r}-{mode}.log", writer is not None, db, writer=writer or "process")
            try:
                wrk(server.url + "/predict", script, 16, 3)  # warm-up
                runs[mode].append(run(server, script, duration))
                if writer is not None:
                    lost += sum(float(ln.split()[-1]) for ln in httpx.get(server.url + "/metrics").text.splitlines()
                                if ln.startswith("hotline_decision_log_lost_total"))
            finally:
                server.stop()
    written = DecisionLog(f"sqlite:///{db}").counts()["decisions"]
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "main_thread_cpu_us_per_request",
            "other_threads_cpu_us_per_request", "child_processes_cpu_us_per_request")
    med = {m: {k: statistics.median(x[k] for x in rs) for k in keys} for m, rs in runs.items()}
    paired = {m: [on["p99_ms"] - off["p99_ms"] for on, off in zip(runs[m], runs["off"], strict=True)]
              for m in modes if m != "off"}
    return {"median": med, "runs": runs, "paired_p99_diff_ms": paired,
            "paired_p99_diff_median_ms": {m: statistics.median(d) for m, d in paired.items()},
            "decisions_written": written, "decisions_lost": lost,
            "requests_answered_on": sum(x["rps"] * duration for m in modes if m != "off" for x in runs[m])}


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
    parser.add_argument("--modes", default="off,on",
                        help=f"server kinds, comma-separated, among {', '.join(MODES)}: 'on' writes the log from a "
                             "child process (the default), 'on-thread' from a thread of the worker")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    store = work / "store"
    print(f"training the demo model into {store} ...", file=sys.stderr)
    ensure_demo_model(ModelStore(store))
    script = predict_script(complaints(), work / "predict.lua", args.case_ids)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if modes[:1] != ("off",) or any(m not in MODES for m in modes) or len(set(modes)) != len(modes) or len(modes) < 2:
        parser.error(f"--modes: 'off' first, then one or more of {', '.join(m for m in MODES if m != 'off')}; "
                     f"got {args.modes!r}")
    pr = predict_rounds(store, work, script, args.repeats, args.duration, modes)
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
                     f"{r['p99_ms']:.2f} ({r['p99_ms'] - off['p99_ms']:+.2f}) | "
                     + (f"{pr['paired_p99_diff_median_ms'][m]:+.2f}" if m != "off" else "") + " | "
                     f"{r['cpu_us_per_request']:.0f} ({r['cpu_us_per_request'] / off['cpu_us_per_request']:.3f}) | "
                     f"{r['main_thread_cpu_us_per_request']:.0f} | {r['other_threads_cpu_us_per_request']:.0f} | "
                     f"{r['child_processes_cpu_us_per_request']:.0f} |"
                     for m, r in med.items())
    header = (f"| /predict, concurrency 16, 1 worker (median of {args.repeats} rounds of {args.duration} s, fresh "
              "servers) | requests/s (/ off) | p50 ms | p99 ms (- off) | paired p99 difference (median) | server "
              "CPU µs per request, with its child processes (/ off) | main thread | other threads | child processes |")
    paired = "; ".join(f"{m}: " + ", ".join(f"{d:+.2f}" for d in ds) for m, ds in pr["paired_p99_diff_ms"].items())
    print(f"""
{header}
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

p99 minus the off server's in each round (ms): {paired}.
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
