"""Prometheus metrics in the app's own registry."""

import os
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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

