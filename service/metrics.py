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
        # per target, not per label: at night one complaint moves a per-label counter, and the scrape would
        # tell whoever reads /metrics what that caller complained about (the label mix is in the decision
        # log's hotline_live_label_psi and GET /quality, aggregated over days)
        self.predictions = Counter("hotline_predictions", "Predictions by target", ["target"], registry=r)
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
        # the decision log (service/decisions.py)
        self.decisions_written = Counter("hotline_decision_log_written", "Decisions written to the decision log",
                                         registry=r)
        self.decisions_lost = Counter("hotline_decision_log_lost", "Decisions that could not be written to the "
                                      "decision log (database unavailable and the buffer full, or the service "
                                      "stopped before it came back)", registry=r)
        self.decisions_pending = Gauge("hotline_decision_log_pending", "Decisions waiting in memory to be written",
                                       registry=r, multiprocess_mode="livesum")
        self.decision_log_degraded = Gauge("hotline_decision_log_degraded", "1 while the decision log cannot be "
                                           "written", registry=r, multiprocess_mode="livemax")
        self.corrections = Counter("hotline_corrections", "Corrections received by source and outcome (stored, "
                                   "replaced, unchanged, refused)", ["source", "status"], registry=r)
        self.correction_new_labels = Counter("hotline_correction_new_labels", "Corrections whose label the model "
                                             "does not know, by target", ["target"], registry=r)
        # live quality of the serving version over each window (service/quality.py refreshes them)
        self.live_accuracy = Gauge("hotline_live_accuracy", "Accuracy of the serving version's predictions whose "
                                   "case got a correction or confirmation; scope: all, auto (went out without "
                                   "review), review", ["target", "window", "scope"], registry=r,
            multiprocess_mode="livemostrecent")
        self.live_labeled = Gauge("hotline_live_labeled", "Predictions of the serving version with a final label",
                                  ["target", "window", "scope"], registry=r,
            multiprocess_mode="livemostrecent")
        self.live_review_rate = Gauge("hotline_live_review_rate", "Share of the serving version's predictions sent "
                                      "to review", ["target", "window"], registry=r,
            multiprocess_mode="livemostrecent")
        self.live_new_label_share = Gauge("hotline_live_new_label_share", "Share of final labels the serving "
                                          "version does not know", ["target", "window"], registry=r,
            multiprocess_mode="livemostrecent")
        self.live_label_psi = Gauge("hotline_live_label_psi", "Population stability index of the predicted label "
                                    "mix against the training mix", ["target", "window"], registry=r,
            multiprocess_mode="livemostrecent")
        self.live_unseen_token_share = Gauge("hotline_live_unseen_token_share", "Share of incoming tokens the "
                                             "serving version never saw in training (a sample)", ["window"],
                                             registry=r, multiprocess_mode="livemostrecent")
        self.live_refreshed = Gauge("hotline_live_quality_timestamp_seconds", "When the live-quality gauges were "
                                    "last computed (Unix time)", registry=r, multiprocess_mode="livemax")
        self._lock = threading.Lock()
        self._n_texts = 0
        self._n_review = 0
        self._versions: set[str] = set()

    def observe_predictions(self, predictions: list[dict[str, Any]]) -> None:
        review = 0
        per_target: dict[str, int] = {}
        for p in predictions:
            for target in p["targets"]:
                per_target[target] = per_target.get(target, 0) + 1
            review += bool(p["needs_review"])
        for target, n in per_target.items():
            self.predictions.labels(target).inc(n)
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

