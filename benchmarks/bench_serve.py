"""Service benchmark (issue 3): the real server over loopback, driven by wrk.

    apt-get install -y wrk
    .venv/bin/python benchmarks/bench_serve.py [--store PATH] [--duration 10] [--repeats 3] [--json out.json]

Starts ``python serve.py`` (1 and 2 workers) on a free port with the demo model (trained into a temporary
store unless ``--store`` has a current model) and measures:

- cold start: process start to the first ``/ready`` 200, model already in the store (median of 3);
- memory per worker: RSS, PSS and USS from /proc/PID/smaps_rollup (the workers fork after the model is
  loaded, so its arrays are shared copy-on-write: PSS is the fair per-worker share);
- ``POST /predict`` with 50-character complaints at concurrency 16: p50 / p99 latency and requests/s, 1 and 2
  workers (wrk, 2 threads, a Lua script cycling 100 different bodies);
- ``POST /predict/batch`` with 100-text batches: texts/s (2 workers, concurrency 4);
- where the time goes in one request: model (tokenization, features, heads), the app (validation, response
  model, JSON, logging, metrics), and HTTP + event loop (the rest), from in-process timings and the
  server-side latency histogram.

The complaints are the bundled, hand-written Ningxia demo cases; none is printed.  Results print as a Markdown
block for BENCHMARKS.md; ``--json`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import pandas as pd  # noqa: E402

from classifier.store import ModelStore  # noqa: E402
from tests.serve_support import free_port  # noqa: E402
from training.demo import DEMO_CORPUS, ensure_demo_model  # noqa: E402

TEXT_LENGTH = 50


def complaints(n: int = 100, length: int = TEXT_LENGTH) -> list[str]:
    """``n`` different demo complaints cut or padded to exactly ``length`` characters."""
    texts = pd.read_csv(DEMO_CORPUS)["text"].astype(str).tolist()
    longest_first = sorted(texts, key=len, reverse=True)
    out = []
    for t in longest_first[: n * 3 : 3]:
        t = t if len(t) >= length else (t + "，" + t) * 2
        out.append(t[:length])
    assert all(len(t) == length for t in out)
    return out


# -- the server ---------------------------------------------------------------------------------------------
class Server:
    def __init__(self, store: Path, workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HOTLINE_MODEL_STORE": str(store), "HOTLINE_PORT": str(self.port),
               "HOTLINE_WORKERS": str(workers), "HOTLINE_TRAIN_DEMO_IF_EMPTY": "false"}
        self.log = log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py")], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.cold_start = self._wait_ready()
        self.workers = workers

    def _wait_ready(self) -> float:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise SystemExit("server not ready after 120 s")

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(p) for p in children] or [self.proc.pid]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private) of a process in MiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    mib = 1024.0
    return {"rss": fields["Rss"] / mib, "pss": fields["Pss"] / mib,
            "uss": (fields["Private_Clean"] + fields["Private_Dirty"]) / mib}


# -- wrk ------------------------------------------------------------------------------------------------------
def lua_script(bodies: list[str], path: Path) -> Path:
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"', "bodies = {"]
    lines += [f"  [==[{b}]==]," for b in bodies]
    lines += ["}", "i = 0", "request = function()", "  i = i % #bodies + 1",
              "  return wrk.format(nil, nil, nil, bodies[i])", "end"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, script: Path, connections: int, duration: int, threads: int = 2) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
                          str(script), url], capture_output=True, text=True, check=True).stdout
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {**latency, "rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["runs"] = runs
    return out


# -- where the time goes --------------------------------------------------------------------------------------
def breakdown(store: Path, texts: list[str]) -> dict[str, float]:
    """Microseconds per 50-character complaint: tokenization, the whole model call, and the app around it."""
    model = ModelStore(store).load().model
    model.warm_up()

    def per_call(fn: Any, n: int = 2000) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n):
                fn(texts[i % len(texts)])
            times.append((time.perf_counter() - t0) / n)
        return statistics.median(times) * 1e6

    tokenize = per_call(model.tokens)
    predict = per_call(lambda t: model.predict_details([t], top_k=3))
    batch = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.predict_details(texts, top_k=3)
        batch.append((time.perf_counter() - t0) / len(texts))
    app_total = asgi_per_request(store, texts)
    return {"tokenize_us": tokenize, "predict_details_us": predict, "batch_per_text_us": statistics.median(batch) * 1e6,
            "app_in_process_us": app_total}


def asgi_per_request(store: Path, texts: list[str], n: int = 300) -> float:
    """Microseconds per /predict through the whole ASGI app, called directly (no sockets, no HTTP parsing):
    middleware, validation, the model, the response model, JSON, the log line, metrics (the route runs in the
    event loop, no thread-pool trip)."""
    import asyncio
    import logging

    from serve import ServiceSettings, create_app, load_model

    settings = ServiceSettings(model_store=store)
    app = create_app(settings, loaded=load_model(settings))
    log = logging.getLogger("hotline.serve")
    log.handlers[:] = [logging.FileHandler(os.devnull)]
    log.setLevel("INFO")
    log.propagate = False
    bodies = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]

    async def call(body: bytes) -> None:
        scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/predict", "raw_path": b"/predict",
                 "root_path": "", "scheme": "http", "query_string": b"", "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80), "headers": [(b"content-type", b"application/json"),
                                                          (b"content-length", str(len(body)).encode())]}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = []

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        assert status == [200], status

    async def run() -> float:
        for b in bodies[:20]:
            await call(b)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n):
                await call(bodies[i % len(bodies)])
            times.append((time.perf_counter() - t0) / n)
        return statistics.median(times) * 1e6

    return asyncio.run(run())


def server_side_latency(url: str) -> float:
    """Mean in-app latency of /predict from the server's histogram (ms)."""
    text = httpx.get(url + "/metrics").text
    total = float(re.search(r'hotline_request_duration_seconds_sum\{route="/predict"\} ([\d.e+-]+)', text).group(1))  # type: ignore[union-attr]
    count = float(re.search(r'hotline_request_duration_seconds_count\{route="/predict"\} ([\d.e+-]+)', text).group(1))  # type: ignore[union-attr]
    return 1000 * total / count if count else float("nan")


# -- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a store with a current model (default: train the demo model "
                        "into a temporary store)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per measurement (the median is quoted)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    store = args.store
    if store is None or ModelStore(store).current() is None:
        store = store or work / "store"
        print(f"training the demo model into {store} ...", file=sys.stderr)
        ensure_demo_model(ModelStore(store))
    texts = complaints()
    single = lua_script([json.dumps({"text": t}, ensure_ascii=False) for t in texts], work / "single.lua")
    batches = [json.dumps({"items": [{"id": str(j), "text": texts[(i + j) % len(texts)]} for j in range(100)]},
                          ensure_ascii=False) for i in range(10)]
    batch = lua_script(batches, work / "batch.lua")
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "versions": {p: version(p) for p in ("fastapi", "uvicorn", "starlette", "pydantic",
                                                         "scikit-learn", "jieba", "numpy", "prometheus-client")},
                    "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]},
        "model_version": ModelStore(store).current(),
        "load_average_before": os.getloadavg(),
    }
    print("where the time goes (in-process) ...", file=sys.stderr)
    results["breakdown"] = breakdown(store, texts)

    cold = []
    for i in range(3):
        s = Server(store, 1, work / f"cold{i}.log")
        cold.append(s.cold_start)
        s.stop()
    results["cold_start_s"] = {"median": statistics.median(cold), "runs": cold}

    for workers in (1, 2):
        print(f"{workers} worker(s) ...", file=sys.stderr)
        s = Server(store, workers, work / f"server{workers}.log")
        try:
            wrk(s.url + "/predict", single, 16, 3)  # warm-up: every worker, every thread of the pool
            results[f"predict_w{workers}_c16"] = median_runs(
                [wrk(s.url + "/predict", single, 16, args.duration) for _ in range(args.repeats)])
            results[f"server_side_ms_w{workers}"] = server_side_latency(s.url)
            if workers == 2:
                results["predict_w2_c1"] = median_runs(
                    [wrk(s.url + "/predict", single, 1, args.duration, threads=1) for _ in range(args.repeats)])
                b = median_runs([wrk(s.url + "/predict/batch", batch, 4, args.duration) for _ in range(args.repeats)])
                b["texts_per_s"] = b["rps"] * 100
                results["batch100_w2_c4"] = b
            results[f"memory_w{workers}"] = {
                "supervisor": memory(s.proc.pid) if workers > 1 else None,
                "workers": [memory(pid) for pid in s.pids()],
            }
        finally:
            s.stop()
    print("the service's own ceiling (a model that costs nothing) ...", file=sys.stderr)
    from benchmarks.serve_null_model import NullModel

    null_store = ModelStore(work / "null-store")
    null_store.save(NullModel(), {"targets": NullModel.targets_}, promote=True)
    s = Server(null_store.path, 2, work / "null.log")
    try:
        wrk(s.url + "/predict", single, 16, 3)
        results["null_predict_w2_c16"] = median_runs(
            [wrk(s.url + "/predict", single, 16, args.duration) for _ in range(args.repeats)])
        b = median_runs([wrk(s.url + "/predict/batch", batch, 4, args.duration) for _ in range(args.repeats)])
        b["texts_per_s"] = b["rps"] * 100
        results["null_batch100_w2_c4"] = b
    finally:
        s.stop()
    shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(report(results))
    return 0


def report(r: dict[str, Any]) -> str:
    b = r["breakdown"]
    p1, p2, c1 = r["predict_w1_c16"], r["predict_w2_c16"], r["predict_w2_c1"]
    batch = r["batch100_w2_c4"]
    m1 = r["memory_w1"]["workers"][0]
    m2 = r["memory_w2"]["workers"]
    sup = r["memory_w2"]["supervisor"]
    v = r["machine"]["versions"]
    n, nb = r["null_predict_w2_c16"], r["null_batch100_w2_c4"]
    lines = [
        f"Model: the demo model (version {r['model_version']}); {TEXT_LENGTH}-character demo complaints, 100 "
        "different bodies cycled; wrk 2 threads on the same 2 cores as the server; medians of "
        f"{len(p1['runs'])} runs.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| /predict p50 / p99, concurrency 16, 1 worker | {p1['p50_ms']:.2f} / {p1['p99_ms']:.2f} ms | |",
        f"| /predict p50 / p99, concurrency 16, 2 workers | {p2['p50_ms']:.2f} / {p2['p99_ms']:.2f} ms "
        "| ≤ 3 / ≤ 20 ms |",
        f"| /predict p50 / p99, concurrency 1, 2 workers | {c1['p50_ms']:.2f} / {c1['p99_ms']:.2f} ms | |",
        f"| /predict requests/s, 1 worker (c16) | {p1['rps']:,.0f} | |",
        f"| /predict requests/s, 2 workers (c16) | {p2['rps']:,.0f} | ≥ 800 |",
        f"| /predict/batch, 100-text batches, 2 workers (c4) | {batch['texts_per_s']:,.0f} texts/s "
        f"({batch['rps']:.1f} batches/s, p50 {batch['p50_ms']:.0f} ms) | ≥ 5,000 texts/s |",
        f"| cold start (process start → /ready 200, model in store) | {r['cold_start_s']['median']:.2f} s | |",
        f"| memory, 1 worker (RSS) | {m1['rss']:.0f} MiB | |",
        "| memory, 2 workers: PSS / private per worker | "
        + ", ".join(f"{w['pss']:.0f} / {w['uss']:.0f} MiB" for w in m2)
        + f" (supervisor {sup['pss']:.0f} / {sup['uss']:.0f}) | |",
        f"| ceiling with a zero-cost model, 2 workers: /predict c16 | {n['rps']:,.0f} req/s, p50 / p99 "
        f"{n['p50_ms']:.2f} / {n['p99_ms']:.2f} ms | |",
        f"| ceiling with a zero-cost model, 2 workers: batch of 100, c4 | {nb['texts_per_s']:,.0f} texts/s | |",
        f"| errors (non-2xx, socket) | {sum(x['non_2xx'] for x in (p1, p2, c1, batch, n, nb))} | 0 |",
        "",
        "Where one request's time goes (in-process, µs per 50-character complaint): tokenization "
        f"{b['tokenize_us']:.0f}, whole `predict_details` {b['predict_details_us']:.0f}, batch of 100 "
        f"{b['batch_per_text_us']:.0f} per text; the whole app called in-process without sockets (middleware, "
        f"validation, model, response model, JSON, log line, metrics) {b['app_in_process_us']:.0f}, "
        f"so the app adds {b['app_in_process_us'] - b['predict_details_us']:.0f}. Server-side mean latency at c16: "
        f"{r['server_side_ms_w1']:.2f} ms (1 worker), {r['server_side_ms_w2']:.2f} ms (2 workers).",
        "",
        f"Machine load average (1/5/15 min) before: {', '.join(f'{x:.1f}' for x in r['load_average_before'])}; "
        f"after: {', '.join(f'{x:.1f}' for x in r['load_average_after'])} (other jobs share the 2 cores).",
        "",
        f"Versions: Python {r['machine']['python']}, " + ", ".join(f"{k} {x}" for k, x in v.items())
        + f", {r['machine']['wrk']}; {r['machine']['cores']} cores.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
