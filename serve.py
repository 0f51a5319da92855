"""The prediction endpoint: a thin FastAPI service over ``classifier/``.

    python serve.py                      # or: hotline serve [--host H --port P --workers N --store PATH]
    HOTLINE_ADMIN_API_KEY=... HOTLINE_WORKERS=2 python serve.py

Routes: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /ready``, ``GET /model``,
``GET /metrics`` (Prometheus), ``POST /admin/reload`` (only when an admin key is configured); OpenAPI docs at
``/docs``.  Settings come from ``HOTLINE_*`` environment variables (``ServiceSettings``).

The model is loaded once: by ``serve()`` before the workers fork (they share its arrays copy-on-write), or by
the app's lifespan when the app is built without one.  A reload builds the new model completely, then swaps a
single reference: every request reads that reference once, so it is answered by exactly one version.
With several workers a reload in one worker is relayed to the others through the supervisor (SIGHUP), and
``kill -HUP <supervisor pid>`` reloads them all; set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so that
``/metrics`` sums all workers (prometheus-client's multiprocess mode).
"""

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from classifier.errors import ComplaintInputError, ModelStoreError, PlaceHintError, UnknownTargetError
from classifier.model import MAX_PLACE_HINT, prediction_record
from classifier.routing import routes
from classifier.store import ModelStore

__all__ = ["ServiceSettings", "LoadedModel", "create_app", "load_model", "serve", "main", "add_command"]

log = logging.getLogger("hotline.serve")

MAX_TOP_K = 50  # the library's bound (classifier.model._check_top_k)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


# -- settings -------------------------------------------------------------------------------------------------
class ServiceSettings(BaseSettings):
    """Service settings, read from ``HOTLINE_<NAME>`` environment variables; unsafe combinations are refused."""

    model_config = SettingsConfigDict(env_prefix="HOTLINE_", protected_namespaces=(), extra="ignore")

    model_store: Path = Field(default=Path("models"), description="the model store folder")
    admin_api_key: SecretStr | None = Field(default=None, description="enables /admin/*; at least 16 characters")
    api_key: SecretStr | None = Field(default=None, description="when set, /predict* and /model require it")
    thresholds: dict[str, float] = Field(default_factory=dict, description='per-target review thresholds, '
                                         'JSON: {"agency": 0.3}')
    default_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    max_text_length: int = Field(default=10_000, ge=1, le=1_000_000)
    max_batch_size: int = Field(default=1_000, ge=1, le=100_000)
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=256, description="threads per worker running batch predictions "
                         "and the other sync routes (single /predict runs in the event loop); more only adds GIL "
                         "contention for this CPU-bound work")
    default_place: str | None = Field(default=None, max_length=MAX_PLACE_HINT, description="the place hint of "
                                      "requests that send none (a county-level hotline: its county; a city's: its "
                                      "city); needs a routing model that knows the place")
    train_demo_if_empty: bool = Field(default=True, description="train the Ningxia demo model into an empty "
                                      "store at start-up")
    strict_versions: bool = Field(default=False, description="refuse models trained with other library versions")
    log_texts: bool = Field(default=False, description="DEBUG ONLY: put complaint texts in the request log")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {t: v for t, v in value.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"review thresholds must be probabilities from 0 to 1, got {bad}")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> "ServiceSettings":
        for name in ("admin_api_key", "api_key"):
            key = getattr(self, name)
            if key is not None and len(key.get_secret_value()) < 16:
                raise ValueError(
                    f"HOTLINE_{name.upper()} is {len(key.get_secret_value())} characters; use at least 16, e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        if (self.admin_api_key is not None and self.api_key is not None
                and self.admin_api_key.get_secret_value() == self.api_key.get_secret_value()):
            raise ValueError("HOTLINE_ADMIN_API_KEY equals HOTLINE_API_KEY: every client could reload models; "
                             "use a separate admin key")
        if self.log_texts and not _is_loopback(self.host):
            raise ValueError(f"HOTLINE_LOG_TEXTS=true writes complaint texts (personal data) to the log; it is "
                             f"only allowed on a loopback host, not {self.host!r}")
        return self


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the loaded model -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """One verified, warmed-up model version and what the service derives from it; never mutated."""

    version: str
    model: Any
    manifest: dict[str, Any]
    thresholds: dict[str, float]
    max_text_length: int
    loaded_at: float = field(default_factory=time.time)
    default_place: str | None = None  # HOTLINE_DEFAULT_PLACE, checked against this model's directory


def load_model(settings: ServiceSettings, store: ModelStore | None = None) -> LoadedModel:
    """Verify, unpickle and warm up the store's current version; check it against the settings."""
    store = store or ModelStore(settings.model_store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = store.load(strict=settings.strict_versions)
    for w in caught:
        log.warning(json.dumps({"event": "model_warning", "version": stored.version, "message": str(w.message)},
                               ensure_ascii=False))
    model = stored.model
    targets = list(model.targets_)
    unknown = sorted(set(settings.thresholds) - set(targets))
    if unknown:
        raise ComplaintInputError(
            f"HOTLINE_THRESHOLDS names targets {unknown} that model version {stored.version!r} does not predict "
            f"(it predicts {targets}); fix the setting or the model"
        )
    default_place = (settings.default_place or "").strip() or None
    if default_place is not None:
        _check_default_place(default_place, model, stored.version)
    model.warm_up()
    return LoadedModel(
        version=stored.version,
        model=model,
        manifest=stored.manifest,
        thresholds={t: settings.thresholds.get(t, settings.default_threshold) for t in targets},
        max_text_length=min(settings.max_text_length, int(model.max_text_length)),
        default_place=default_place,
    )


def _routing_info(model: Any) -> dict[str, Any] | None:
    """What ``GET /model`` says about a routing model's directory and decisions (None without routing)."""
    summary = getattr(model, "routing_summary_", None)
    if not routes(model) or not isinstance(summary, dict):
        return None
    keys = ("agencies", "places", "functions", "sha256", "category_function_pairs", "county_calibration")
    return {k: summary[k] for k in keys if k in summary}


def _check_default_place(place: str, model: Any, version: str) -> None:
    """HOTLINE_DEFAULT_PLACE needs a routing model whose directory knows the place (a county, town or city)."""
    if not routes(model):
        raise ComplaintInputError(f"HOTLINE_DEFAULT_PLACE={place!r} needs a routing model; model version "
                                  f"{version!r} has no routing directory; unset it or serve a routing model")
    match = model.resolve_place(place)
    if match.county is None and match.level != "city":
        raise ComplaintInputError(f"HOTLINE_DEFAULT_PLACE={place!r} names no county, town or city of model version "
                                  f"{version!r}'s routing directory")


def freeze_heap(refreeze: bool = False) -> None:
    """Move every live object out of the garbage collector's reach (``gc.freeze``).

    A loaded model is ~170,000 tracked objects: a full collection walks them all (about 70 ms, a latency spike
    in whichever request is running) and, in forked workers, writes to their pages, which undoes the
    copy-on-write sharing.  Frozen, they are skipped; reference counting still frees them when unused.
    """
    if refreeze:
        gc.unfreeze()  # let the previous model's cycles be collected once
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The reference to the serving model; reloads are serialized, reads are a single attribute load."""

    def __init__(self, settings: ServiceSettings, loaded: LoadedModel | None = None) -> None:
        self.settings = settings
        self.current: LoadedModel | None = loaded
        self._reload_lock = threading.Lock()

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Load the store's current version and swap it in; on any failure the old model keeps serving."""
        with self._reload_lock:
            previous = self.current
            new = load_model(self.settings)
            self.current = new
            if gc.get_freeze_count():  # serve() froze the first model: do the same for this one
                freeze_heap(refreeze=True)
            return previous, new

    def reload_if_changed(self) -> None:
        """The SIGHUP path: reload only when the store's current version differs from the serving one."""
        try:
            current = ModelStore(self.settings.model_store).current()
            if self.current is not None and current == self.current.version:
                return
            previous, new = self.reload()
            log.info(json.dumps({"event": "model_reloaded", "trigger": "signal", "pid": os.getpid(),
                                 "previous_version": previous.version if previous else None,
                                 "version": new.version}))
        except Exception as exc:  # keep serving the old model; say why
            log.error(json.dumps({"event": "model_reload_failed", "trigger": "signal", "pid": os.getpid(),
                                  "error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False))


# -- request and response models ------------------------------------------------------------------------------
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K, description="how many ranked labels per target")]
TargetNames = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]] | None,
                        Field(min_length=1, max_length=20, description="targets to predict (default: all)")]


PlaceHint = Annotated[str | None, Field(
    max_length=MAX_PLACE_HINT, description="where the case is, as the caller knows it (the form's district, the "
    "county whose line was called: 海原县, 海原县李旺镇); a routing model uses it when the text names no county or "
    "town itself; refused (422) by a model without routing")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="the complaint text; its limit is in GET /model")
    place: PlaceHint = None
    top_k: TopK = 3
    explain: bool = Field(default=False, description="add the terms behind each label")
    targets: TargetNames = None


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="the caller's id, echoed in the result")
    text: str
    place: PlaceHint = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, description="the limit on their number is in GET /model")
    top_k: TopK = 3
    explain: bool = False
    targets: TargetNames = None


class Alternative(BaseModel):
    label: str
    score: float


class ExplanationTerm(BaseModel):
    term: str
    kind: str = Field(description="word, char, lead word or lead char (lead: among the text's first characters)")
    weight: float


class TargetPrediction(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str
    score: float = Field(description="calibrated probability of the label")
    threshold: float = Field(description="the review threshold for this target")
    needs_review: bool = Field(description="score is under the threshold")
    alternatives: list[Alternative]
    # absent unless asked for ("explain": true), as in `hotline predict --json`: one shape for both
    explanation: list[ExplanationTerm] | None = Field(default=None, exclude_if=lambda v: v is None)


class Prediction(BaseModel):
    # a routing wrapper (jurisdiction routing) adds keys to each result: they pass through
    model_config = ConfigDict(extra="allow")

    targets: dict[str, TargetPrediction]
    needs_review: bool = Field(description="true when any target's score is under its threshold")
    routing: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None,
                                           description="how the agency was routed; present only when the model "
                                           "is a routing model")


class PredictResponse(Prediction):
    model_version: str
    request_id: str


class ItemError(BaseModel):
    type: str
    message: str


class BatchResult(BaseModel):
    id: str
    prediction: Prediction | None = None
    error: ItemError | None = None


class BatchResponse(BaseModel):
    model_version: str
    request_id: str
    results: list[BatchResult]
    failed: int = Field(description="how many items have an error instead of a prediction")


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    model_version: str | None = None
    detail: str | None = None


class HeadInfo(BaseModel):
    kind: Literal["fused", "svm"] = Field(description="fused: word-block SVM + char-block SVM + naive Bayes "
                                          "with fitted view weights; svm: one linear SVM with a temperature")
    classes: int
    fusion_weights: dict[str, float] | None = None
    temperature: float
    features_used: int | None = Field(default=None, description="features with a weight for some class (fewer "
                                      "than the vectorizer's for a target labeled on part of the texts); None "
                                      "for models saved before it was recorded")


class TargetInfo(BaseModel):
    labels: list[str]
    threshold: float
    metrics: dict[str, float] = Field(description="hold-out metrics from training (accuracy, macro_f1, ...)")
    head: HeadInfo | None = Field(default=None, description="how the target's text head turns features into "
                                  "probabilities (a routed agency is computed from its heads and the directory)")


class ModelInfo(BaseModel):
    version: str
    trained_at: str | None
    loaded_at: float
    training_rows: int | None
    targets: dict[str, TargetInfo]
    max_text_length: int
    max_batch_size: int
    max_top_k: int
    default_place: str | None = Field(description="the place hint used when a request sends none "
                                      "(HOTLINE_DEFAULT_PLACE)")
    routing: dict[str, Any] | None = Field(description="a routing model's directory and how it decides (agencies, "
                                           "category-function pairs, the county guesses' calibration); null for "
                                           "a model without routing")


class ReloadResponse(BaseModel):
    reloaded: bool
    version: str | None
    previous_version: str | None
    detail: str | None = None


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[FieldError] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not UTF-8"},
    413: {"model": ErrorResponse, "description": "the body is larger than HOTLINE_MAX_REQUEST_BYTES"},
    422: {"model": ErrorResponse, "description": "invalid input; `detail` says what and how to fix it"},
    503: {"model": ErrorResponse, "description": "no model loaded"},
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse, "description": "missing or wrong key"}}


# -- metrics --------------------------------------------------------------------------------------------------
class ServiceMetrics:
    """Prometheus metrics in the app's own registry (one app, one registry: tests do not share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry
        self.requests = Counter("hotline_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "hotline_request_duration_seconds", "Request latency in the app (seconds) by route", ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.predictions = Counter("hotline_predictions", "Predicted labels by target and label",
                                   ["target", "label"], registry=r)
        self.texts = Counter("hotline_texts_classified", "Texts classified", registry=r)
        self.review = Counter("hotline_texts_needing_review", "Texts whose result needs review", registry=r)
        # with several workers (PROMETHEUS_MULTIPROC_DIR set) these gauges have one sample per worker (pid)
        self.review_rate = Gauge("hotline_review_rate", "Share of texts classified by this process that need "
                                 "review (rate() of the two counters gives it per window)", registry=r,
                                 multiprocess_mode="liveall")
        self.model_info = Gauge("hotline_model_info", "The loaded model version (value 1)", ["version"], registry=r,
                                multiprocess_mode="liveall")
        self.reloads = Counter("hotline_model_reloads", "Model reloads by outcome", ["outcome"], registry=r)
        self.coalesced = Histogram("hotline_predict_coalesced", "Single /predict requests predicted in one model "
                                   "call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self._lock = threading.Lock()
        self._n_texts = 0
        self._n_review = 0
        self._versions: set[str] = set()

    def observe_predictions(self, predictions: list[dict[str, Any]]) -> None:
        review = 0
        for p in predictions:
            for target, entry in p["targets"].items():
                self.predictions.labels(target, entry["label"]).inc()
            review += bool(p["needs_review"])
        self.texts.inc(len(predictions))
        self.review.inc(review)
        with self._lock:
            self._n_texts += len(predictions)
            self._n_review += review
            self.review_rate.set(self._n_review / self._n_texts if self._n_texts else 0.0)

    def exposition(self) -> bytes:
        """The text format: this process's metrics, or every worker's summed when PROMETHEUS_MULTIPROC_DIR is
        set (the supervisor sets it for several workers)."""
        if not self.multiprocess:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))

    def set_model(self, version: str) -> None:
        if self.multiprocess:  # clear() cannot reach the other workers' files: mark the old version 0
            for old in self._versions - {version}:
                self.model_info.labels(old).set(0)
        else:
            self.model_info.clear()
        self.model_info.labels(version).set(1)
        self._versions.add(version)


# -- request log, request ids and latency (plain ASGI: no per-request task or body copy) ---------------------
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class RequestLog:
    """One JSON log line and the metrics for each HTTP request; sets ``X-Request-ID``; refuses oversized
    bodies (413) before they are read."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_request_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.match(candidate) else None
            elif name == b"content-length":
                length = value
        info: dict[str, Any] = {"request_id": request_id or uuid.uuid4().hex}
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
            if length is not None and _too_long(length, self.max_request_bytes):
                await _send_error(send_with_id, 413, f"request body is {length.decode('latin-1')} bytes; the "
                                  f"limit is {self.max_request_bytes:,} (HOTLINE_MAX_REQUEST_BYTES); split the "
                                  "batch")
            else:
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


def _too_long(header: bytes, limit: int) -> bool:
    try:
        return int(header) > limit
    except ValueError:
        return False


async def _send_error(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


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


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # pydantic echoes the offending input: never send a whole complaint text (or 10 MB) back
    detail, errors = _field_errors(exc)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # FastAPI raises Starlette's for unparsable bodies
    detail = exc.detail
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        detail = (f"request body is not UTF-8 ({cause.reason} at byte {cause.start}); send UTF-8 encoded "
                  "JSON with Content-Type: application/json")
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be parsed; send UTF-8 encoded JSON with Content-Type: application/json"
    return JSONResponse({"detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)


# -- the app --------------------------------------------------------------------------------------------------
def create_app(
    settings: ServiceSettings | None = None,
    loaded: LoadedModel | None = None,
    on_reload: Callable[[LoadedModel], None] | None = None,
) -> FastAPI:
    """Build the service.  ``loaded``: a model already loaded (by the supervisor, before forking); otherwise
    the lifespan loads the store's current version.  ``on_reload``: called after a successful admin reload."""
    settings = settings or ServiceSettings()
    holder = ModelHolder(settings, loaded)
    metrics = ServiceMetrics()
    coalescer = _Coalescer(metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder.current is None:
            holder.current = load_model(settings)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        metrics.set_model(holder.current.version)
        log.info(json.dumps({"event": "model_loaded", "version": holder.current.version, "pid": os.getpid()}))
        yield

    app = FastAPI(
        title="12345 hotline complaint classifier",
        summary="Category and handling agency for a hotline complaint, with calibrated scores",
        version="0.1.0",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: _on_validation_error, StarletteHTTPException: _on_http_error},
    )
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.settings = settings
    app.add_middleware(RequestLog, metrics=metrics, max_request_bytes=settings.max_request_bytes)

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")

    def _require(expected: SecretStr | None, given: str | None, what: str) -> None:
        if expected is None:
            return
        if given is None or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise HTTPException(401, detail=f"missing or wrong {what} key: send it in the X-API-Key header",
                                headers={"WWW-Authenticate": "X-API-Key"})

    async def client_key(key: Annotated[str | None, Depends(key_header)]) -> None:
        _require(settings.api_key, key, "API")

    async def admin_key(key: Annotated[str | None, Depends(key_header)]) -> None:
        _require(settings.admin_api_key, key, "admin API")

    async def serving_model() -> LoadedModel:
        current = holder.current
        if current is None:
            raise HTTPException(503, detail="no model is loaded yet; retry shortly")
        return current

    Model = Annotated[LoadedModel, Depends(serving_model)]
    client_auth = [Depends(client_key)] if settings.api_key is not None else []

    @app.post("/predict", response_model=PredictResponse, dependencies=client_auth,
              responses={**_ERRORS, **(_AUTH_ERRORS if client_auth else {})})
    # async: one complaint costs ~0.5 ms of CPU, less than a trip through the thread pool, and requests that
    # arrive together are predicted in one call (_Coalescer); the batch route below stays sync so a 1,000-text
    # batch cannot stall /health
    async def predict(body: PredictRequest, request: Request, current: Model) -> Response:
        """Classify one complaint: label, calibrated score and top-k alternatives for each target."""
        info = request.scope["hotline"]
        info["text_length"] = len(body.text)
        info["model_version"] = current.version
        if settings.log_texts:
            info["text"] = body.text
        problem = _text_problem(body.text, current.max_text_length)
        if problem is not None:
            raise HTTPException(422, detail=f"text {problem[1]}")
        place = body.place if body.place is not None else current.default_place
        result = await coalescer.predict(current, body.text, place, body.top_k, body.targets, body.explain)
        metrics.observe_predictions([result])
        info["labels"] = {t: e["label"] for t, e in result["targets"].items()}
        info["needs_review"] = result["needs_review"]
        return _json(PredictResponse.model_validate(
            {**result, "model_version": current.version, "request_id": info["request_id"]}))

    @app.post("/predict/batch", response_model=BatchResponse, dependencies=client_auth,
              responses={**_ERRORS, **(_AUTH_ERRORS if client_auth else {})})
    def predict_batch(body: BatchRequest, request: Request, current: Model) -> Response:
        """Classify up to `max_batch_size` complaints; results come back in order with their ids.  An unusable
        item (empty or too long) fails alone, with its reason."""
        info = request.scope["hotline"]
        items = body.items
        info["items"] = len(items)
        info["text_length"] = sum(len(it.text) for it in items)
        info["model_version"] = current.version
        if settings.log_texts:
            info["texts"] = [it.text for it in items]
        if len(items) > settings.max_batch_size:
            raise HTTPException(422, detail=f"the batch has {len(items):,} items; the limit is "
                                f"{settings.max_batch_size:,} (HOTLINE_MAX_BATCH_SIZE); split it")
        _check_unique_ids(items)
        results: list[dict[str, Any]] = [{"id": it.id, "prediction": None, "error": None} for it in items]
        good = []
        for i, it in enumerate(items):
            problem = _text_problem(it.text, current.max_text_length)
            if problem is None:
                good.append(i)
            else:
                results[i]["error"] = {"type": problem[0], "message": f"item {it.id!r}: text {problem[1]}"}
        if good:
            places = [items[i].place if items[i].place is not None else current.default_place for i in good]
            predictions = _predict_isolated(current, [items[i].text for i in good], places, body.top_k,
                                            body.targets, body.explain)
            ok = []
            for i, p in zip(good, predictions, strict=True):
                if isinstance(p, ItemError):
                    results[i]["error"] = {"type": p.type, "message": f"item {items[i].id!r}: {p.message}"}
                else:
                    results[i]["prediction"] = p
                    ok.append(p)
            metrics.observe_predictions(ok)
            info["labels"] = _label_counts(ok)
        failed = sum(r["error"] is not None for r in results)
        info["failed"] = failed
        return _json(BatchResponse.model_validate({"model_version": current.version, "request_id": info["request_id"],
                                                   "results": results, "failed": failed}))

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, str]:
        """The process is alive (it does not look at the model: see /ready)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    def ready() -> Any:
        """A model is loaded and answers a probe prediction."""
        current = holder.current
        if current is None:
            return JSONResponse({"ready": False, "model_version": None, "detail": "no model loaded"}, 503)
        try:
            current.model.predict_details(["就绪检查"], top_k=1)
        except Exception as exc:  # the model is loaded but cannot answer: not ready, and say why
            return JSONResponse({"ready": False, "model_version": current.version,
                                 "detail": f"probe prediction failed: {type(exc).__name__}: {exc}"}, 503)
        return {"ready": True, "model_version": current.version}

    @app.get("/model", response_model=ModelInfo, dependencies=client_auth,
             responses={503: _ERRORS[503], **(_AUTH_ERRORS if client_auth else {})})
    async def model_info(current: Model) -> dict[str, Any]:
        """The serving model: version, when it was trained, labels, hold-out metrics and review thresholds."""
        m = current.manifest
        all_metrics = m.get("metrics") or {}
        return {
            "version": current.version,
            "trained_at": m.get("created"),
            "loaded_at": current.loaded_at,
            "training_rows": (m.get("data") or {}).get("rows_used"),
            "targets": {
                t: {"labels": current.model.classes(t), "threshold": current.thresholds[t],
                    "metrics": _scalar_metrics(all_metrics.get(t)), "head": _head_info(current.model, t)}
                for t in current.model.targets_
            },
            "max_text_length": current.max_text_length,
            "max_batch_size": settings.max_batch_size,
            "max_top_k": MAX_TOP_K,
            "default_place": current.default_place,
            "routing": _routing_info(current.model),
        }

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
    def prometheus_metrics() -> Response:
        """Prometheus metrics of this worker process."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    if settings.admin_api_key is not None:

        @app.post("/admin/reload", response_model=ReloadResponse, dependencies=[Depends(admin_key)],
                  responses={**_AUTH_ERRORS, 409: {"model": ReloadResponse,
                                                   "description": "the load failed; the old model still serves"}})
        def reload_model(request: Request) -> Any:
            """Load the store's current version and swap it in; a failed load keeps the old model serving."""
            old = holder.current
            try:
                previous, new = holder.reload()
            except Exception as exc:  # any failure: keep serving, say why
                metrics.reloads.labels("failed").inc()
                reason = f"{type(exc).__name__}: {exc}"
                request.scope["hotline"]["reload_error"] = reason
                version = old.version if old else None
                return JSONResponse({"reloaded": False, "version": version, "previous_version": version,
                                     "detail": f"reload failed, still serving {version}: {reason}"}, 409)
            metrics.reloads.labels("ok").inc()
            metrics.set_model(new.version)
            request.scope["hotline"]["model_version"] = new.version
            if on_reload is not None:
                on_reload(new)
            return {"reloaded": True, "version": new.version,
                    "previous_version": previous.version if previous else None}

    return app


def _json(response: BaseModel) -> Response:
    """The response, validated by its model in the route's worker thread and serialized by pydantic: FastAPI
    would validate it again in a second trip through the thread pool (the response_model still documents it)."""
    return Response(response.model_dump_json(), media_type="application/json")


def _label_counts(predictions: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for p in predictions:
        for target, entry in p["targets"].items():
            per = counts.setdefault(target, {})
            per[entry["label"]] = per.get(entry["label"], 0) + 1
    return counts


def _text_problem(text: str, limit: int) -> tuple[str, str] | None:
    if not text.strip():
        return "empty_text", "is empty or whitespace only; send the complaint's text"
    if len(text) > limit:
        return "text_too_long", f"has {len(text):,} characters; the limit is {limit:,}"
    return None


def _check_unique_ids(items: list[BatchItem]) -> None:
    seen: dict[str, int] = {}
    dupes = []
    for i, it in enumerate(items):
        if it.id in seen:
            dupes.append(f"{it.id!r} (items {seen[it.id]} and {i})")
        else:
            seen[it.id] = i
    if dupes:
        more = f" and {len(dupes) - 5} more" if len(dupes) > 5 else ""
        raise HTTPException(422, detail="duplicate ids in the batch: " + ", ".join(dupes[:5]) + more
                            + "; each item needs its own id")


class _Refused(HTTPException):
    """A 422 for an input the model refused; ``kind`` is the error type a batch item reports."""

    def __init__(self, detail: str, kind: str) -> None:
        super().__init__(422, detail=detail)
        self.kind = kind


def _predict(current: LoadedModel, texts: list[str], places: list[str | None], top_k: int,
             targets: list[str] | None, explain: bool) -> list[dict[str, Any]]:
    """The model's results as response dicts; a bad request (unknown target, ...) becomes a 422."""
    # ``places`` only when a request has one: a model (or wrapper) written before place hints keeps working
    hints = {"places": places} if any(p is not None for p in places) else {}
    try:
        raw = current.model.predict_details(texts, top_k=top_k, targets=targets, explain=explain,
                                            thresholds=current.thresholds, **hints)
    except UnknownTargetError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    except PlaceHintError as exc:
        raise _Refused(str(exc), "invalid_place") from None
    except ComplaintInputError as exc:
        raise _Refused(str(exc), "invalid_text") from None
    names = targets if targets is not None else list(current.model.targets_)
    return [prediction_record(r, names, current.thresholds) for r in raw]


def _predict_isolated(current: LoadedModel, texts: list[str], places: list[str | None], top_k: int,
                      targets: list[str] | None, explain: bool) -> list[dict[str, Any] | ItemError]:
    """Predict a batch in one call; if the model refuses one item, find it and fail only that one."""
    try:
        return list(_predict(current, texts, places, top_k, targets, explain))
    except HTTPException as exc:
        if len(texts) == 1 or targets is not None and _unknown_targets(current, targets):
            raise
        out: list[dict[str, Any] | ItemError] = []
        for text, place in zip(texts, places, strict=True):
            try:
                out.append(_predict(current, [text], [place], top_k, targets, explain)[0])
            except HTTPException as one:
                out.append(ItemError(type=getattr(one, "kind", "invalid_text"), message=str(one.detail)))
        if all(isinstance(o, ItemError) for o in out):
            raise exc from None
        return out


class _Coalescer:
    """Single ``/predict`` requests that arrive together are predicted in one model call.

    A request queues its text and waits; the queue is predicted on the event loop's next turn, so every request
    whose bytes arrived in the same turn joins the call: no timer, so an idle service answers a lone request
    as fast as before (a batch of one).  The model's batch path costs ~0.26 ms per complaint in batches of 16
    against ~0.5 ms one at a time, and under load that is where a worker's time goes.  Requests are grouped by
    the model that accepted them (a reload between two requests keeps each on its own version), ``top_k``,
    ``targets`` and ``explain``; a text the model refuses fails only its own request.
    """

    MAX_ITEMS = 64

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self._queue: list[tuple[tuple[Any, ...], LoadedModel, str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._scheduled = False

    async def predict(self, current: LoadedModel, text: str, place: str | None, top_k: int,
                      targets: list[str] | None, explain: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        key = (id(current), top_k, tuple(targets) if targets is not None else None, explain)
        self._queue.append((key, current, text, place, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run, loop)
        return await future

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue[: self.MAX_ITEMS], self._queue[self.MAX_ITEMS :]
        if self._queue:
            loop.call_soon(self._run, loop)
        else:
            self._scheduled = False
        self.metrics.coalesced.observe(len(batch))
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, (key, _, _, _, _) in enumerate(batch):
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            current = batch[members[0]][1]
            _, top_k, targets, explain = key
            names = list(targets) if targets is not None else None
            futures = [batch[i][4] for i in members]
            try:
                results = _predict(current, [batch[i][2] for i in members], [batch[i][3] for i in members], top_k,
                                   names, explain)
            except HTTPException as exc:
                if len(members) == 1 or names is not None and _unknown_targets(current, names):
                    _settle(futures, exc)
                    continue
                for i, future in zip(members, futures, strict=True):  # find the item the model refused
                    try:
                        _settle([future], _predict(current, [batch[i][2]], [batch[i][3]], top_k, names, explain)[0])
                    except HTTPException as one:
                        _settle([future], one)
                continue
            except Exception as exc:  # a bug: each waiting request gets it (a 500), the worker keeps serving
                _settle(futures, exc)
                continue
            for future, result in zip(futures, results, strict=True):
                _settle([future], result)


def _settle(futures: list[asyncio.Future[dict[str, Any]]], outcome: dict[str, Any] | BaseException) -> None:
    for future in futures:
        if future.done():  # the client went away and its request was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _unknown_targets(current: LoadedModel, targets: list[str]) -> bool:
    return any(t not in current.model.targets_ for t in targets)


# a head's description, once per loaded head: counting the features it uses reads its whole weight matrix
# (5-15 ms for a large model), too long to repeat on the event loop for every GET /model
_HEAD_INFO: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _head_info(model: Any, target: str) -> dict[str, Any] | None:
    head: Any = getattr(model, "heads_", {}).get(target)
    if head is None or not hasattr(head, "describe"):
        return None
    info = _HEAD_INFO.get(head)
    if info is None:
        info = _HEAD_INFO[head] = head.describe()
    return info


def _scalar_metrics(m: Any) -> dict[str, float]:
    if not isinstance(m, dict):
        return {}
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# -- running it -----------------------------------------------------------------------------------------------
class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{"):
            return msg
        return json.dumps({"event": "log", "level": record.levelname.lower(), "logger": record.name,
                           "message": msg}, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def prepare_store(settings: ServiceSettings, say: Callable[[str], None]) -> ModelStore:
    """The store, with the demo model trained into it when it is empty (unless that is turned off)."""
    store = ModelStore(settings.model_store)
    if store.current() is None:
        if not settings.train_demo_if_empty:
            raise SystemExit(
                f"error: model store {store.path} has no current model. Train one with "
                f"`hotline train cases.xlsx --text COLUMN --category COLUMN --agency COLUMN --store {store.path} "
                f"--promote`, or `hotline demo --store {store.path}` for the Ningxia demo model, or set "
                "HOTLINE_TRAIN_DEMO_IF_EMPTY=true"
            )
        from training.demo import ensure_demo_model

        say(f"model store {store.path} is empty: training the Ningxia demo model (about 20 s)")
        version, _ = ensure_demo_model(store)
        say(f"trained demo model version {version}")
    return store


def serve(settings: ServiceSettings) -> int:
    """Load the model, bind the socket, then run one uvicorn server or fork ``workers`` of them."""
    configure_logging(settings.log_level)

    def say(msg: str) -> None:
        log.info(json.dumps({"event": "startup", "message": msg}, ensure_ascii=False))

    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning(json.dumps({"event": "startup", "message": f"{settings.workers} workers without "
                                "PROMETHEUS_MULTIPROC_DIR: /metrics shows only the worker that answers the scrape; "
                                "set it to an empty directory to sum all workers"}))
    prepare_store(settings, say)
    try:
        loaded = load_model(settings)
    except (ModelStoreError, ComplaintInputError, OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: cannot load the model: {exc}") from None
    freeze_heap()  # before forking: the workers share the model's pages and never collect them
    say(f"loaded model version {loaded.version} from {settings.model_store}")
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; choose another "
                         "port with --port or HOTLINE_PORT") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    say(f"listening on http://{settings.host}:{sock.getsockname()[1]} with {settings.workers} worker(s); "
        "docs at /docs")
    if settings.workers == 1:
        app = create_app(settings, loaded)
        _on_sighup(app)
        _uvicorn_server(app, settings).run(sockets=[sock])
        return 0
    return _supervise(settings, loaded, sock)


def _uvicorn_server(app: FastAPI, settings: ServiceSettings) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False)
    return uvicorn.Server(config)


def _on_sighup(app: FastAPI) -> None:
    holder: ModelHolder = app.state.holder
    metrics: ServiceMetrics = app.state.metrics

    def reload_in_thread(signum: int, frame: Any) -> None:
        def run() -> None:
            holder.reload_if_changed()
            if holder.current is not None:
                metrics.set_model(holder.current.version)

        threading.Thread(target=run, name="hotline-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload_in_thread)


def _supervise(settings: ServiceSettings, loaded: LoadedModel, sock: socket.socket) -> int:
    """Fork ``workers`` uvicorn servers sharing the listening socket and the loaded model (copy-on-write).

    SIGTERM/SIGINT stop them; SIGHUP makes each reload the store's current version; a worker that dies is
    replaced.  A reload through one worker's /admin/reload is relayed to the others by SIGHUP.
    """
    supervisor = os.getpid()
    children: dict[int, int] = {}
    stopping = False

    def relay(new: LoadedModel) -> None:
        os.kill(supervisor, signal.SIGHUP)

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(s, signal.SIG_DFL)
                app = create_app(settings, loaded, on_reload=relay)
                _on_sighup(app)
                _uvicorn_server(app, settings).run(sockets=[sock])
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's loop
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    def hup(signum: int, frame: Any) -> None:
        for pid in list(children):
            _kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:  # a previous run's files would be summed with ours
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink()
    for n in range(settings.workers):
        spawn(n)
    restarts: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        dead = children.pop(pid, None)
        if metrics_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
        if dead is None or stopping:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 5 * settings.workers:
            log.error(json.dumps({"event": "workers_crashing", "message": "workers keep dying; stopping"}))
            stop(signal.SIGTERM, None)
            continue
        log.warning(json.dumps({"event": "worker_died", "pid": pid, "status": status, "restarting": True}))
        spawn(dead)
    return 0


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _settings_from(args: argparse.Namespace) -> ServiceSettings:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers),
                                    ("model_store", args.store)) if v is not None}
    try:
        return ServiceSettings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise SystemExit("error: refusing to start with these settings:\n" + "\n".join(lines)) from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default: $HOTLINE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: $HOTLINE_PORT or 8000)")
    p.add_argument("--workers", type=int, help="worker processes (default: $HOTLINE_WORKERS or 1)")
    p.add_argument("--store", type=Path, help="model store folder (default: $HOTLINE_MODEL_STORE or models/)")


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(_settings_from(args))


def add_command(subparsers: Any) -> None:
    """``hotline serve``: found by ``training.cli``."""
    p = subparsers.add_parser("serve", help="run the prediction service (HTTP)",
                              description="Run the prediction service. Other settings: HOTLINE_* environment "
                              "variables (see serve.ServiceSettings).")
    _add_arguments(p)
    p.set_defaults(func=cmd_serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve.py", description="Run the hotline prediction service.")
    _add_arguments(parser)
    return cmd_serve(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
