"""Error bodies: always ``{"detail": "<one readable message>"}``."""

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


# -- error bodies: always {"detail": "<one readable message>"} --------------------------------------------------
def _field_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors, messages = [], []
    for e in exc.errors():
        loc = [p for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "json_invalid":
            pos = loc[0] if loc else "?"
            msg = (f"request body is not valid JSON: {e.get('ctx', {}).get('error', 'decode error')} at character "
                   f"{pos}; send a JSON object such as {{\"text\": \"...\"}}")
            loc = []
        elif e.get("type") == "missing":
            msg = "field required"
        else:
            msg = str(e.get("msg", "invalid value"))
        where = ".".join(str(p) for p in loc)
        errors.append({"loc": loc, "msg": msg, "type": str(e.get("type", "invalid"))})
        messages.append(f"{where}: {msg}" if where else msg)
    if not messages:  # pragma: no cover - pydantic always says something
        messages = ["invalid request"]
    return "; ".join(messages[:10]) + (f" (and {len(messages) - 10} more)" if len(messages) > 10 else ""), errors


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # pydantic echoes the offending input: never send a whole complaint text (or 10 MB) back
    detail, errors = _field_errors(exc)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # FastAPI raises Starlette's for unparsable bodies
    detail = exc.detail
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        detail = (f"request body is not UTF-8 ({cause.reason} at byte {cause.start}); send UTF-8 encoded "
                  "JSON with Content-Type: application/json")
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be parsed; send UTF-8 encoded JSON with Content-Type: application/json"
    return JSONResponse({"detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)

