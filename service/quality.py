"""``GET /quality`` and the live-quality gauges of ``/metrics``.

The gauges are recomputed by a background thread every ``HOTLINE_QUALITY_REFRESH_SECONDS`` (one query per
table over the longest window), so a Prometheus scrape never waits for the database; ``GET /quality``
computes afresh.  Both describe the decisions of every version in the log; the gauges only the serving
version's (alerts are about the model in service).
"""


import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from classifier.errors import DecisionLogError
from classifier.store import ModelStore
from live.quality import live_quality, training_mix
from service.decisions import DecisionRecorder
from service.loading import LoadedModel
from service.metrics import ServiceMetrics
from service.predicting import json_response
from service.schemas import AUTH_ERRORS, ErrorResponse, QualityResponse
from service.settings import ServiceSettings

__all__ = ["quality_router", "QualityRefresher", "compute_quality"]

log = logging.getLogger("hotline.serve")

_MIXES: dict[str, dict[str, dict[str, float]]] = {}  # a version's training mix: its manifest never changes


def _mixes(settings: ServiceSettings, current: LoadedModel | None) -> dict[str, Any]:
    """Every stored version's training label mix (read once per version: a manifest never changes)."""
    if current is not None:
        _MIXES.setdefault(current.version, training_mix(current.manifest))
    store = ModelStore(settings.model_store)
    try:
        versions = store.versions()
    except Exception:  # an unreadable store: PSI only for the serving version
        versions = []
    for v in versions:
        if v not in _MIXES:
            try:
                _MIXES[v] = training_mix(store.manifest(v))
            except Exception:  # a damaged or refused version: no PSI for it
                _MIXES[v] = {}
    return _MIXES


def compute_quality(recorder: DecisionRecorder, settings: ServiceSettings,
                    current: LoadedModel | None) -> dict[str, Any]:
    if recorder.log is None:
        raise DecisionLogError("the decision log is off (HOTLINE_DECISION_LOG=false)")
    recorder.ensure_schema()
    result = live_quality(recorder.log, windows=settings.quality_windows, mixes=_mixes(settings, current))
    result["serving_version"] = current.version if current is not None else None
    return result


def quality_router(recorder: DecisionRecorder, settings: ServiceSettings, serving_model: Callable[..., Any],
                   auth: list[Any]) -> APIRouter:
    router = APIRouter()

    @router.get("/quality", response_model=QualityResponse, dependencies=auth,
                responses={503: {"model": ErrorResponse, "description": "the decision log cannot be read"},
                           **(AUTH_ERRORS if auth else {})})
    def quality(current: Annotated[LoadedModel, Depends(serving_model)]) -> Response:
        """Live accuracy from corrections and confirmations, review rate, new labels and drift, per window,
        model version and target (see the README, "Live quality")."""
        try:
            result = compute_quality(recorder, settings, current)
        except DecisionLogError as exc:
            raise HTTPException(503, detail=f"live quality cannot be read now: {exc}",
                                headers={"Retry-After": "30"}) from None
        return json_response(QualityResponse.model_validate(result))

    return router


class QualityRefresher:
    """Recomputes the serving version's live-quality gauges in the background."""

    def __init__(self, recorder: DecisionRecorder, settings: ServiceSettings, metrics: ServiceMetrics,
                 current: Callable[[], LoadedModel | None]) -> None:
        self.recorder = recorder
        self.settings = settings
        self.metrics = metrics
        self.current = current
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "QualityRefresher":
        self._thread = threading.Thread(target=self._run, name="hotline-quality", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.settings.quality_refresh_seconds):
            self.refresh()

    def refresh(self) -> None:
        try:
            current = self.current()
            result = compute_quality(self.recorder, self.settings, current)
        except Exception as exc:  # the log is down: the gauges keep their last values, the timestamp says when
            log.warning(json.dumps({"event": "quality_refresh_failed", "error": f"{type(exc).__name__}: {exc}"},
                                   ensure_ascii=False))
            return
        self.set_gauges(result)

    def set_gauges(self, result: dict[str, Any]) -> None:
        m = self.metrics
        version = result.get("serving_version")
        for gauge in (m.live_accuracy, m.live_labeled, m.live_review_rate, m.live_new_label_share, m.live_label_psi,
                      m.live_unseen_token_share):
            if not m.multiprocess:
                gauge.clear()
        for name, window in result["windows"].items():
            stats = window["versions"].get(version)
            if stats is None:
                continue
            if stats.get("unseen_token_share") is not None:
                m.live_unseen_token_share.labels(name).set(stats["unseen_token_share"])
            for target, t in stats["targets"].items():
                for scope, part in (("all", t), ("auto", t["auto"]), ("review", t["review"])):
                    m.live_labeled.labels(target, name, scope).set(part["labeled"])
                    if part["accuracy"] is not None:
                        m.live_accuracy.labels(target, name, scope).set(part["accuracy"])
                if t["review_rate"] is not None:
                    m.live_review_rate.labels(target, name).set(t["review_rate"])
                if t["new_label_share"] is not None:
                    m.live_new_label_share.labels(target, name).set(t["new_label_share"])
                if t["label_psi"] is not None:
                    m.live_label_psi.labels(target, name).set(t["label_psi"])
        m.live_refreshed.set(time.time())
