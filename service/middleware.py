"""Request log, request ids and latency: plain ASGI, no per-request task or body copy (the body-size limit and
the deadlines are in ``service.limits``)."""

import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.metrics import ServiceMetrics

log = logging.getLogger("hotline.serve")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    """32 hex digits that sort by time, as UUIDv7's do: the milliseconds since 1970 (12 digits), then 80 random
    bits.  A request without a case id is logged under its request id, and ids in time order land at the end
    of the decision log's case-id index instead of on a random page of it (random ids made each written
    decision cost the writer thread about twice the CPU: BENCHMARKS.md, issue 13)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


# -- request log, request ids and latency (plain ASGI: no per-request task or body copy) ---------------------
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class RequestLog:
    """One JSON log line and the metrics for each HTTP request; sets ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.match(candidate) else None
        info: dict[str, Any] = {"request_id": request_id or new_request_id()}
        scope["hotline"] = info  # the route adds text length, labels, model version
        status = 500
        header = (b"x-request-id", info["request_id"].encode())

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(elapsed)
            record = {"event": "request", **info, "method": scope["method"], "route": path, "status": status,
                      "latency_ms": round(elapsed * 1000, 3)}
            log.info(json.dumps(record, ensure_ascii=False))

