"""How much a client may send and how slowly: the body-size limit and the header and body deadlines.

Two layers, because the app only sees a request once its headers are complete:

- ``BodyLimits`` (ASGI middleware) refuses a body over ``HOTLINE_MAX_REQUEST_BYTES`` with 413: at once when its
  ``Content-Length`` says so, otherwise as soon as the bytes received pass the limit, however the body is sent
  (chunked, or a length the client does not keep to); nothing beyond the limit is held in memory.  A body not
  complete ``HOTLINE_BODY_TIMEOUT_SECONDS`` after the headers gets 408 and its connection is closed.
- ``timed_protocol`` (uvicorn's httptools protocol with deadlines) closes a connection whose request headers are
  not complete ``HOTLINE_HEADER_TIMEOUT_SECONDS`` after it opened or after the request's first byte (408 when part
  of a request came), and a connection whose body is still arriving a moment after the body deadline although
  the app no longer reads it (after a 413, or a route that answers without reading): such a body is read and
  discarded until then, so the client can still read the answer.

Without these, a few hundred connections sending half a request (slowloris) hold the service's sockets forever.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from typing import Any

from fastapi import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.middleware import ASGIApp

__all__ = ["BodyLimits", "timed_protocol", "BODY_TIMEOUT_GRACE_SECONDS"]

# the protocol closes a connection whose body is late this long after the middleware's deadline, so that a
# route reading the body answers 408 first
BODY_TIMEOUT_GRACE_SECONDS = 1.0


def _too_large(limit: int, got: str) -> HTTPException:
    return HTTPException(413, detail=f"request body is {got}; the limit is {limit:,} (HOTLINE_MAX_REQUEST_BYTES); "
                         "split the batch")


class BodyLimits:
    """Refuses bodies over ``max_bytes`` (413) and bodies slower than ``timeout`` seconds (408)."""

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
        deadline = time.monotonic() + timeout
        received = 0
        complete = False

        async def limited_receive() -> Any:
            nonlocal received, complete
            if complete:  # the body is in: later calls wait for a disconnect, with no deadline
                return await receive()
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, detail=f"the request body did not arrive within {timeout:g} s "
                                    "(HOTLINE_BODY_TIMEOUT_SECONDS); send it at once, or split the batch",
                                    headers={"Connection": "close"}) from None
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
            self._body_timer = self.loop.call_later(body_timeout + BODY_TIMEOUT_GRACE_SECONDS, self._body_late)

        def on_message_complete(self) -> None:
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
            if not self.transport.is_closing():
                self.transport.close()  # the app, if still waiting for the body, sees a disconnect

    return TimedHttpToolsProtocol
