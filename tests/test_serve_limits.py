"""The real server (``python serve.py``) against raw sockets: a chunked body over HOTLINE_MAX_REQUEST_BYTES is
refused while it is being sent and never held in memory; connections that send half their headers or half
their body are closed at their deadlines (issue 15, 2.3 and 2.4)."""

from __future__ import annotations

import selectors
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TINY_CASES
from tests.serve_support import server_process, tiny_store

LIMIT = 1 << 20  # 1 MiB
HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0
TEXT = TINY_CASES[6][0]  # 同心县的出租车拒载，还骂乘客 -> 公共交通


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    store, _ = tiny_store(tmp_path_factory.mktemp("limits-store"), tiny_model)
    log_path = tmp_path_factory.mktemp("limits-log") / "server.log"
    with server_process(store.path, log_path, HOTLINE_MAX_REQUEST_BYTES=str(LIMIT),
                        HOTLINE_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
                        HOTLINE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT)) as (url, proc):
        parts = urlsplit(url)
        yield (parts.hostname, parts.port), proc


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def chunked_head(path: str = "/predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: hotline\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_within_the_limit_is_answered(server):
    address, _ = server
    body = f'{{"text": "{TEXT}"}}'.encode()
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(chunked_head() + chunk(body[:7]) + chunk(body[7:]) + b"0\r\n\r\n")
        answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert "公共交通".encode() in answer


def test_a_chunked_body_over_the_limit_is_refused_as_it_passes_the_limit_and_never_held(server):
    address, proc = server
    httpx.post(f"http://{address[0]}:{address[1]}/predict", json={"text": TEXT}, timeout=10)  # warm
    before = rss_bytes(proc.pid)
    piece = chunk(b"a" * 65536)
    sent, answered_after, answer = 0, None, b""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(chunked_head() + chunk(b'{"text": "'))
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ)
        try:
            while sent < 48 * LIMIT:  # 48 MiB, unless the server closes first
                s.sendall(piece)
                sent += len(piece)
                if answered_after is None and sel.select(timeout=0):
                    answer = s.recv(65536)
                    answered_after = sent
        except (BrokenPipeError, ConnectionResetError):  # closed at the body deadline: allowed
            pass
        grown = rss_bytes(proc.pid) - before
        if answered_after is None:  # the answer came while we were blocked in sendall
            answered_after = sent
        s.settimeout(5)
        answer = read_response(s, answer)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"the limit is 1,048,576 (HOTLINE_MAX_REQUEST_BYTES)" in answer
    # the answer came long before the end (what the kernel buffers in between is all that was sent meanwhile)
    assert answered_after < 16 * LIMIT, f"413 only after {answered_after:,} bytes"
    assert grown < 16 * LIMIT, f"server memory grew {grown:,} bytes while {sent:,} were sent"
    assert proc.poll() is None


def test_slow_headers_and_slow_bodies_are_cut_off_at_their_deadlines(server):
    address, _ = server
    half_headers = b"POST /predict HTTP/1.1\r\nHost: hotline\r\nContent-Ty"
    half_body = (b"POST /predict HTTP/1.1\r\nHost: hotline\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"text": "' + "路灯".encode() * 10)
    unread_body = b"POST /health HTTP/1.1\r\nHost: hotline\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100
    groups = {"idle": b"", "half headers": half_headers, "half body": half_body, "body nobody reads": unread_body}
    sockets: dict[socket.socket, str] = {}
    start = time.monotonic()
    for name, data in groups.items():
        for _ in range(10):
            s = socket.create_connection(address, timeout=5)
            s.sendall(data)
            sockets[s] = name
    received = {s: b"" for s in sockets}
    closed_after: dict[socket.socket, float] = {}
    sel = selectors.DefaultSelector()
    for s in sockets:
        sel.register(s, selectors.EVENT_READ)
    deadline = start + BODY_TIMEOUT + 6
    while len(closed_after) < len(sockets) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                received[s] += data
            else:
                closed_after[s] = time.monotonic() - start
                sel.unregister(s)
    for s in sockets:
        s.close()
    still_open = sorted({sockets[s] for s in sockets if s not in closed_after})
    assert still_open == [], f"still open after {deadline - start:.0f} s: {still_open}"
    by_group: dict[str, list[tuple[float, bytes]]] = {}
    for s, name in sockets.items():
        by_group.setdefault(name, []).append((closed_after[s], received[s]))
    for after, data in by_group["idle"]:
        assert data == b"" and after < HEADER_TIMEOUT + 2
    for after, data in by_group["half headers"]:
        assert data.startswith(b"HTTP/1.1 408 ") and b"HOTLINE_HEADER_TIMEOUT_SECONDS" in data
        assert after < HEADER_TIMEOUT + 2
    for after, data in by_group["half body"]:
        assert data.startswith(b"HTTP/1.1 408 ") and b"HOTLINE_BODY_TIMEOUT_SECONDS" in data
        assert BODY_TIMEOUT - 0.5 < after < BODY_TIMEOUT + 2
    for after, data in by_group["body nobody reads"]:  # answered at once (405), then closed at the deadline
        assert data.startswith(b"HTTP/1.1 405 ")
        assert after < BODY_TIMEOUT + 3


def read_response(s: socket.socket, data: bytes = b"") -> bytes:
    """One whole response with a Content-Length (``data``: what was already read of it)."""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += s.recv(65536)
    return head + b"\r\n\r\n" + rest
