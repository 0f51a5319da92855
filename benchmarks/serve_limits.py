"""Oversized and slow requests against the real server with its default limits (issue 15, 2.3 and 2.4).

    .venv/bin/python -m benchmarks.serve_limits --store /tmp/benchstore3 [--mb 300] [--connections 500]

- a chunked ``POST /predict`` body of ``--mb`` MB (no Content-Length) against ``HOTLINE_MAX_REQUEST_BYTES``
  (64 MiB): how far the upload got when the 413 arrived, and the server's memory before and after;
- ``--connections`` connections that send half their headers, and as many that send their headers and half a
  body: when each was closed (``HOTLINE_HEADER_TIMEOUT_SECONDS`` 10, ``HOTLINE_BODY_TIMEOUT_SECONDS`` 30);
- the middleware's cost per request (in process, no network).

The server is ``python serve.py`` with one worker on a free loopback port; the store's current model (the demo's,
``hotline demo --store PATH``) is what it loads.  No complaint text is printed.  Prints a Markdown block.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import selectors
import socket
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from benchmarks.bench_serve import Server, memory


def chunked_upload(server: Server, megabytes: int) -> dict[str, float | str]:
    before = memory(server.proc.pid)["rss"]
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: hotline\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"10000\r\n" + b"a" * 65536 + b"\r\n"
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sent, answered_at, status, start = 0, None, "", time.monotonic()
    try:
        while sent < megabytes * 1_000_000:
            s.sendall(piece)
            sent += len(piece)
            if answered_at is None and sel.select(0):
                status = s.recv(200).split(b"\r\n")[0].decode()
                answered_at = sent
    except OSError:  # closed at the body deadline
        pass
    seconds = time.monotonic() - start
    after = memory(server.proc.pid)["rss"]
    s.close()
    return {"sent_mb": sent / 1e6, "seconds": seconds, "status": status,
            "answered_after_mb": (answered_at or sent) / 1e6, "rss_before_mib": before, "rss_after_mib": after}


def slow_clients(server: Server, n: int) -> dict[str, dict[str, float]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 100)), hard))
    sends = {"half headers": b"POST /predict HTTP/1.1\r\nHost: hotline\r\nContent-Ty",
             "half body": b"POST /predict HTTP/1.1\r\nHost: hotline\r\nContent-Length: 1000\r\n\r\n{\"text\": \""}
    sel = selectors.DefaultSelector()
    for kind, data in sends.items():
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", server.port))
            c.sendall(data)
            sel.register(c, selectors.EVENT_READ, kind)
    start = time.monotonic()
    closed: dict[str, list[float]] = {kind: [] for kind in sends}
    while sum(map(len, closed.values())) < 2 * n and time.monotonic() - start < 120:
        for key, _ in sel.select(0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed[key.data].append(time.monotonic() - start)
                sel.unregister(sock)
                sock.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return {kind: {"closed": len(v), "first_s": min(v, default=float("nan")), "last_s": max(v, default=float("nan"))}
            for kind, v in closed.items()}


def middleware_cost(n: int = 50_000) -> float:
    """Microseconds ``BodyLimits`` adds to a request whose small body is already in (the common case)."""
    from service.limits import BodyLimits

    body = b'{"text": "' + "路灯坏了".encode() * 10 + b'"}'

    async def app(scope: dict, receive: object, send: object) -> None:
        await receive()  # type: ignore[operator]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: object) -> None:
        return None

    scope = {"type": "http", "headers": [(b"content-length", str(len(body)).encode())]}
    guarded = BodyLimits(app, 64 << 20, 30.0)  # type: ignore[arg-type]

    async def per_call(a: object) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await a(scope, receive, send)  # type: ignore[operator]
        return (time.perf_counter() - start) / n * 1e6

    async def run() -> float:
        return min([await per_call(guarded) - await per_call(app) for _ in range(3)])

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True, help="a model store with a current version")
    p.add_argument("--mb", type=int, default=300)
    p.add_argument("--connections", type=int, default=500)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="serve-limits-"))
    os.environ.setdefault("HOTLINE_DECISION_LOG_URL", f"sqlite:///{work / 'decisions.sqlite'}")
    server = Server(args.store, 1, work / "server.log")
    try:
        upload = chunked_upload(server, args.mb)
        slow = slow_clients(server, args.connections)
        import httpx

        still = httpx.post(server.url + "/predict", json={"text": "路灯坏了"}, timeout=30).status_code
    finally:
        server.stop()
    cost = middleware_cost()
    load = os.getloadavg()[0]
    print(f"""
Command: `.venv/bin/python -m benchmarks.serve_limits --store {args.store} --mb {args.mb} --connections \
{args.connections}` ({os.cpu_count()} cores, load average {load:.1f}; Python {platform.python_version()}, uvicorn \
{version('uvicorn')}, httptools {version('httptools')}; default limits: 64 MiB, headers 10 s, body 30 s)

| test | result |
| --- | --- |
| {upload['sent_mb']:.0f} MB chunked upload | {upload['status']} after {upload['answered_after_mb']:.1f} MB; \
server RSS {upload['rss_before_mib']:.0f} -> {upload['rss_after_mib']:.0f} MiB |
| {args.connections} connections with half the headers | {slow['half headers']['closed']} closed, \
{slow['half headers']['first_s']:.1f}-{slow['half headers']['last_s']:.1f} s after they were all open |
| {args.connections} connections with half a body | {slow['half body']['closed']} closed, \
{slow['half body']['first_s']:.1f}-{slow['half body']['last_s']:.1f} s |
| a request afterwards | {still} |
| BodyLimits per request (in process) | {cost:.1f} us |
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
