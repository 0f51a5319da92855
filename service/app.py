"""The FastAPI app: routes over the holder, the predictor and the metrics."""

import gc
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.auth import key_dependency, metrics_key_dependency
from service.decisions import DecisionRecorder
from service.docs import add_docs
from service.errors import on_http_error, on_validation_error
from service.feedback import feedback_router
from service.hints import hint_warnings
from service.limits import BodyLimits
from service.loading import LoadedModel, ModelHolder, load_model, routing_info
from service.metrics import ServiceMetrics
from service.middleware import RequestLog
from service.model_info import head_info, scalar_metrics
from service.predicting import (
    Coalescer,
    Coverage,
    check_unique_ids,
    json_response,
    label_counts,
    predict_isolated,
    text_problem,
)
from service.quality import QualityRefresher, quality_router
from service.schemas import (
    AUTH_ERRORS,
    ERRORS,
    BatchRequest,
    BatchResponse,
    HealthResponse,
    ItemError,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ReloadResponse,
    WorkerInfo,
)
from service.settings import MAX_TOP_K, ServiceSettings
from service.worker_versions import WorkerState, WorkerVersions

log = logging.getLogger("hotline.serve")


# -- the app --------------------------------------------------------------------------------------------------
def create_app(
    settings: ServiceSettings | None = None,
    loaded: LoadedModel | None = None,
    on_reload: Callable[[LoadedModel], None] | None = None,
    versions: WorkerVersions | None = None,
) -> FastAPI:
    """Build the service.  ``loaded``: a model already loaded (by the supervisor, before forking); otherwise
    the lifespan loads the store's current version.  ``on_reload``: called after a successful admin reload.
    ``versions``: with several workers, the shared record of each worker's version (``runner._supervise``)."""
    settings = settings or ServiceSettings()
    holder = ModelHolder(settings, loaded, versions)
    metrics = ServiceMetrics()
    coalescer = Coalescer(metrics)
    recorder = DecisionRecorder(settings, metrics) if settings.decision_log else None
    refresher = (QualityRefresher(recorder, settings, metrics, lambda: holder.current)
                 if recorder is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = holder.current or load_model(settings)
        holder.set_current(current)  # with several workers: reported to the others
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        metrics.set_model(current.version)
        log.info(json.dumps({"event": "model_loaded", "version": current.version, "pid": os.getpid()}))
        if recorder is not None and refresher is not None:
            await anyio.to_thread.run_sync(recorder.open)
            refresher.start()
        if gc.get_freeze_count():  # serve() froze the model: freeze what starting the app made too (the decision
            # log's engine, its migrations' modules): a full collection then walks only what requests leave
            # alive, not ~10,000 objects of start-up for 6-12 ms with every request in flight waiting
            gc.freeze()
        try:
            yield
        finally:
            if recorder is not None and refresher is not None:
                refresher.close()
                await anyio.to_thread.run_sync(recorder.close)  # flushes what is buffered

    app = FastAPI(
        title="12345 hotline complaint classifier",
        summary="Category and handling agency for a hotline complaint, with calibrated scores",
        version="0.1.0",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: on_validation_error, StarletteHTTPException: on_http_error},
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: add_docs serves them from the package
        redoc_url=None,
    )
    add_docs(app)
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.recorder = recorder
    app.state.quality_refresher = refresher
    # the last added runs first: the request log sees the limits' 413 and 408 too
    app.add_middleware(BodyLimits, max_bytes=settings.max_request_bytes, timeout=settings.body_timeout_seconds)
    app.add_middleware(RequestLog, metrics=metrics)

    client_key = key_dependency(settings.api_key, "API")
    admin_key = key_dependency(settings.admin_api_key, "admin API")
    metrics_key = (metrics_key_dependency(settings.metrics_api_key, "metrics API") if settings.metrics_api_key
                   else metrics_key_dependency(settings.api_key, "API"))

    async def serving_model() -> LoadedModel:
        current = holder.current
        if current is None:
            raise HTTPException(503, detail="no model is loaded yet; retry shortly")
        return current

    def worker_states(current: LoadedModel) -> list[WorkerState]:
        if versions is None:
            return [WorkerState(pid=os.getpid(), version=current.version, since=current.loaded_at)]
        return versions.states()

    Model = Annotated[LoadedModel, Depends(serving_model)]
    client_auth = [Depends(client_key)] if settings.api_key is not None else []
    metrics_auth = [Depends(metrics_key)] if (settings.metrics_api_key or settings.api_key) is not None else []

    @app.post("/predict", response_model=PredictResponse, dependencies=client_auth,
              responses={**ERRORS, **(AUTH_ERRORS if client_auth else {})})
    # async: one complaint costs ~0.5 ms of CPU, less than a trip through the thread pool, and requests that
    # arrive together are predicted in one call (Coalescer); the batch route below stays sync so a 1,000-text
    # batch cannot stall /health
    async def predict(body: PredictRequest, request: Request, current: Model) -> Response:
        """Classify one complaint: label, calibrated score and top-k alternatives for each target."""
        info = request.scope["hotline"]
        info["text_length"] = len(body.text)
        info["model_version"] = current.version
        if settings.log_texts:
            info["text"] = body.text
        problem = text_problem(body.text, current.max_text_length)
        if problem is not None:
            raise HTTPException(422, detail=f"text {problem[1]}")
        place = body.place if body.place is not None else current.default_place
        coverage: list[Coverage] | None = [] if recorder is not None and recorder.counts_drift else None
        result = await coalescer.predict(current, body.text, place, body.top_k, body.targets, body.explain,
                                         coverage)
        warnings = hint_warnings(current.model, body.place)
        if warnings is not None:
            result = {**result, "warnings": warnings}
        metrics.observe_predictions([result])
        if recorder is not None:
            recorder.record(current, [result], [body.case_id or info["request_id"]], info["request_id"],
                            [body.text], coverage)
        info["labels"] = {t: e["label"] for t, e in result["targets"].items()}
        info["needs_review"] = result["needs_review"]
        return json_response(PredictResponse.model_validate(
            {**result, "model_version": current.version, "request_id": info["request_id"]}))

    @app.post("/predict/batch", response_model=BatchResponse, dependencies=client_auth,
              responses={**ERRORS, **(AUTH_ERRORS if client_auth else {})})
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
        check_unique_ids(items)
        results: list[dict[str, Any]] = [{"id": it.id, "prediction": None, "error": None} for it in items]
        good = []
        for i, it in enumerate(items):
            problem = text_problem(it.text, current.max_text_length)
            if problem is None:
                good.append(i)
            else:
                results[i]["error"] = {"type": problem[0], "message": f"item {it.id!r}: text {problem[1]}"}
        if good:
            places = [items[i].place if items[i].place is not None else current.default_place for i in good]
            coverage: list[Coverage] | None = [] if recorder is not None and recorder.counts_drift else None
            predictions = predict_isolated(current, [items[i].text for i in good], places, body.top_k,
                                           body.targets, body.explain, coverage)
            ok, ok_items, ok_coverage = [], [], []
            for k, (i, p) in enumerate(zip(good, predictions, strict=True)):
                if isinstance(p, ItemError):
                    results[i]["error"] = {"type": p.type, "message": f"item {items[i].id!r}: {p.message}"}
                else:
                    warnings = hint_warnings(current.model, items[i].place)
                    results[i]["prediction"] = p if warnings is None else {**p, "warnings": warnings}
                    ok.append(p)
                    ok_items.append(items[i])
                    ok_coverage.append(coverage[k] if coverage else None)
            metrics.observe_predictions(ok)
            if recorder is not None:
                rid = info["request_id"]
                recorder.record(current, ok, [it.case_id or f"{rid}:{it.id}" for it in ok_items], rid,
                                [it.text for it in ok_items], ok_coverage)
            info["labels"] = label_counts(ok)
        failed = sum(r["error"] is not None for r in results)
        info["failed"] = failed
        return json_response(BatchResponse.model_validate(
            {"model_version": current.version, "request_id": info["request_id"], "results": results,
             "failed": failed}))

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, str]:
        """The process is alive (it does not look at the model: see /ready)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    def ready() -> Any:
        """A model is loaded and answers a probe prediction."""
        current = holder.current
        log_state, log_detail = recorder.status() if recorder is not None else ("off", None)
        if current is None:
            return JSONResponse({"ready": False, "detail": "no model loaded", "decision_log": log_state}, 503)
        try:
            current.model.predict_details(["就绪检查"], top_k=1)
        except Exception as exc:  # the model is loaded but cannot answer: not ready, and say why
            return JSONResponse({"ready": False, "model_version": current.version, "decision_log": log_state,
                                 "detail": f"probe prediction failed: {type(exc).__name__}: {exc}"}, 503)
        workers = worker_states(current)
        expected = versions.workers if versions is not None else 1
        target = (versions.target() if versions is not None else None) or current.version
        on_target = sum(w.version == target for w in workers)
        if on_target < expected:  # a switch in progress, a worker that could not switch (its log says why) or one
            # being replaced
            log_detail = "; ".join(filter(None, [f"switching to {target}: {on_target} of {expected} workers "
                                                 "serve it" if on_target < len(workers) else
                                                 f"{len(workers)} of {expected} workers running", log_detail]))
        # a degraded log does not stop predictions: still ready, and says why
        return {"ready": True, "model_version": current.version, "decision_log": log_state, "detail": log_detail,
                "workers": [_worker_info(w) for w in workers]}

    @app.get("/model", response_model=ModelInfo, dependencies=client_auth,
             responses={503: ERRORS[503], **(AUTH_ERRORS if client_auth else {})})
    async def model_info(current: Model) -> dict[str, Any]:
        """The serving model: version, when it was trained, labels, hold-out metrics and review thresholds."""
        m = current.manifest
        all_metrics = m.get("metrics") or {}
        return {
            "version": current.version,
            "trained_at": m.get("created"),
            "loaded_at": datetime.fromtimestamp(current.loaded_at, UTC),
            "training_rows": (m.get("data") or {}).get("rows_used"),
            "targets": {
                t: {"labels": current.model.classes(t), "threshold": current.thresholds[t],
                    "metrics": scalar_metrics(all_metrics.get(t)), "head": head_info(current.model, t)}
                for t in current.model.targets_
            },
            "max_text_length": current.max_text_length,
            "max_batch_size": settings.max_batch_size,
            "max_top_k": MAX_TOP_K,
            "default_place": current.default_place,
            "routing": routing_info(current.model),
        }

    @app.get("/metrics", response_class=Response, dependencies=metrics_auth,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
                        **(AUTH_ERRORS if metrics_auth else {})})
    def prometheus_metrics() -> Response:
        """Prometheus metrics (every worker's with PROMETHEUS_MULTIPROC_DIR).  With HOTLINE_METRICS_API_KEY (or
        else HOTLINE_API_KEY) set, the key is needed: in X-API-Key or as Authorization: Bearer."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    if recorder is not None:
        app.include_router(feedback_router(recorder, serving_model, client_auth, settings.max_text_length))
        app.include_router(quality_router(recorder, settings, serving_model, client_auth))

    if settings.admin_api_key is not None:

        @app.post("/admin/reload", response_model=ReloadResponse, dependencies=[Depends(admin_key)],
                  responses={**AUTH_ERRORS, 409: {"model": ReloadResponse,
                                                   "description": "the load failed; the old model still serves"},
                             202: {"model": ReloadResponse, "description": "this worker switched; not every "
                                   "other worker had within HOTLINE_RELOAD_TIMEOUT_SECONDS (`workers` says which)"}})
        def reload_model(request: Request) -> Any:
            """Load the store's current version and swap it in; a failed load keeps the old model serving.  With
            several workers, the answer comes once every worker serves the new version (200), or after
            HOTLINE_RELOAD_TIMEOUT_SECONDS with each worker's version (202: the switch is in progress)."""
            old = holder.current
            try:
                previous, new = holder.reload()
            except Exception as exc:  # any failure: keep serving, say why
                metrics.reloads.labels("failed").inc()
                reason = f"{type(exc).__name__}: {exc}"
                request.scope["hotline"]["reload_error"] = reason
                version = old.version if old else None
                body = ReloadResponse(reloaded=False, version=version, previous_version=version,
                                      detail=f"reload failed, still serving {version}: {reason}")
                return JSONResponse(body.model_dump(mode="json"), 409)
            metrics.reloads.labels("ok").inc()
            metrics.set_model(new.version)
            request.scope["hotline"]["model_version"] = new.version
            if versions is not None:
                versions.set_target(new.version)  # the service's version: siblings and replacements follow it
            if on_reload is not None:
                on_reload(new)
            complete, workers = True, worker_states(new)
            if versions is not None:
                complete, workers = versions.wait_for(new.version, settings.reload_timeout_seconds)
            body = ReloadResponse(reloaded=True, version=new.version,
                                  previous_version=previous.version if previous else None, complete=complete,
                                  workers=[WorkerInfo(**_worker_info(w)) for w in workers])
            if complete:
                return body
            switched = sum(w.version == new.version for w in workers)
            expected = versions.workers if versions is not None else len(workers)
            body.detail = (f"switch in progress: {switched} of {expected} workers serve {new.version} after "
                           f"{settings.reload_timeout_seconds:g} s (HOTLINE_RELOAD_TIMEOUT_SECONDS); GET /ready lists "
                           "each worker's version, and their log says why one cannot switch")
            return JSONResponse(body.model_dump(mode="json"), 202)

    return app


def _worker_info(w: WorkerState) -> dict[str, Any]:
    return {"pid": w.pid, "version": w.version, "since": datetime.fromtimestamp(w.since, UTC)}

