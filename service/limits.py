"""How much a client may send and how slowly: the body-size limit and the header and body deadlines.

Two layers, because the app only sees a request once its headers are complete:

- ``timed_protocol`` (uvicorn's httptools protocol with deadlines) closes a connection whose request headers are
  not complete ``HOTLINE_HEADER_TIMEOUT_SECONDS`` after it opened or after the request's first byte (408 when part
  of a request came).  When a body is not complete ``HOTLINE_BODY_TIMEOUT_SECONDS`` after its headers, it marks
  the request late (``BODY_LATE`` in the ASGI scope) and wakes the app if it is waiting for the body; a moment
  later it closes the connection if it is still open (the app was not reading: after a 413, or a route that
  answers without reading the body, which is read and discarded until then so the client can read the answer).
- ``BodyLimits`` (ASGI middleware) refuses a body over ``HOTLINE_MAX_REQUEST_BYTES`` with 413: at once when its
  ``Content-Length`` says so, otherwise as soon as the bytes received pass the limit, however the body is sent
  (chunked, or a length the client does not keep to); nothing beyond the limit is held in memory.  A request the
  protocol marked late gets 408, and its connection is closed.  It costs about 2 us a request on the
  2-core test machine; an ``asyncio.timeout`` around each read of the body cost 14 us, which is why the deadline
  lives in the protocol.

Without these, a few hundred connections sending half a request (slowloris) hold the service's sockets forever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from fastapi import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.middleware import ASGIApp

__all__ = ["BodyLimits", "timed_protocol", "BODY_LATE", "BODY_TIMEOUT_GRACE_SECONDS"]

BODY_LATE = "hotline.body_late"  # set in the request's scope by the protocol when the body deadline passes
# the protocol closes a connection whose body is late this long after the deadline, so that a route reading the
# body answers 408 first
BODY_TIMEOUT_GRACE_SECONDS = 1.0


def _too_large(limit: int, got: str) -> HTTPException:
    return HTTPException(413, detail=f"request body is {got}; the limit is {limit:,} (HOTLINE_MAX_REQUEST_BYTES); "
                         "split the batch")


class BodyLimits:
    """Refuses bodies over ``max_bytes`` (413) and bodies the protocol marked late (408; ``timeout``: the
    deadline's setting, for the message)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and _over(value, self.max_bytes):
                await _send_error(send, _too_large(self.max_bytes, f"{value.decode('latin-1')} bytes"))
                return
        limit, timeout = self.max_bytes, self.timeout
        received = 0
        complete = False

        async def limited_receive() -> Any:
            nonlocal received, complete
            if complete:  # the body is in: later calls wait for a disconnect
                return await receive()
            message = await receive()
            if scope.get(BODY_LATE):
                raise HTTPException(408, detail=f"the request body did not arrive within {timeout:g} s "
                                    "(HOTLINE_BODY_TIMEOUT_SECONDS); send it at once, or split the batch",
                                    headers={"Connection": "close"})
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    raise _too_large(limit, f"{received:,} bytes" if complete else
                                     f"over {received:,} bytes (received so far; the rest is not read)")
            return message

        await self.app(scope, limited_receive, send)


def _over(header: bytes, limit: int) -> bool:
    try:
        return int(header) > limit
    except ValueError:
        return False


async def _send_error(send: Any, exc: HTTPException) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    await send({"type": "http.response.start", "status": exc.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- the protocol: header deadline, and no connection kept open by a body nobody reads --------------------------
def timed_protocol(header_timeout: float, body_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a header deadline and a body deadline (``uvicorn.Config(http=...)``)."""

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _in_headers = False
        _body_done = True

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            if self._header_timer is None:  # a new connection's clock already runs
                self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._cancel_header_timer()
            super().on_headers_complete()
            self._cancel_body_timer()
            self._body_done = False
            self._body_timer = self.loop.call_later(body_timeout, self._body_late)

        def on_message_complete(self) -> None:
            self._body_done = True
            self._cancel_body_timer()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            self._cancel_body_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _cancel_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._in_headers:  # part of a request came: say why it is refused
                detail = json.dumps({"detail": f"the request headers did not arrive within {header_timeout:g} s "
                                               "(HOTLINE_HEADER_TIMEOUT_SECONDS)"}).encode()
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: " + str(len(detail)).encode()
                                     + b"\r\n\r\n" + detail)
            self.transport.close()

        def _body_late(self) -> None:
            self._body_timer = None
            if self._body_done or self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or cycle.response_complete:  # answered already (413, 405): nobody reads the rest
                self.transport.close()
                return
            cycle.scope[BODY_LATE] = True  # type: ignore[literal-required]
            cycle.message_event.set()  # a route waiting for the body wakes up and answers 408 (BodyLimits)
            self._body_timer = self.loop.call_later(BODY_TIMEOUT_GRACE_SECONDS, self._close_late)

        def _close_late(self) -> None:  # the app did not answer: it was not reading the body
            self._body_timer = None
            if not self._body_done and not self.transport.is_closing():
                self.transport.close()

    return TimedHttpToolsProtocol
