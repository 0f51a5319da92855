"""The service's side of the decision log: record each prediction off the request path, store corrections.

One ``DecisionRecorder`` per worker process (opened in the app's lifespan, after the fork): its writer (a child
process of the worker, ``live.writer_process``, or with ``HOTLINE_DECISION_LOG_WRITER=thread`` a thread of it,
``live.writer``) writes decisions in batches; corrections are written synchronously, so a correction
answered 2xx is in the database.  When the database is down, predictions go on (their records wait in the
writer's bounded buffer, and what cannot be kept is counted in ``hotline_decision_log_lost``), ``/ready`` says
the log is degraded and ``/feedback`` answers 503.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from classifier.errors import DecisionLogError
from live.db import describe_url
from live.log import Correction, CorrectionError, CorrectionResult, Decision, DecisionLog
from live.writer import DecisionWriter, Pending
from live.writer_process import DecisionWriterProcess, WriterConfig, queued_decision
from service.loading import LoadedModel
from service.metrics import ServiceMetrics
from service.predicting import Coverage
from service.settings import ServiceSettings

__all__ = ["DecisionRecorder"]

log = logging.getLogger("hotline.serve")


class DecisionRecorder:
    def __init__(self, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.url = settings.decision_log_address()
        self.log: DecisionLog | None = None
        self.writer: DecisionWriter | DecisionWriterProcess | None = None
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._known: dict[str, dict[str, frozenset[str]]] = {}

    # -- life -----------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and migrate; a database that is down now only degrades the log (retried on each write)."""
        self.log = DecisionLog(self.url, store_texts=self.settings.decision_log_texts, migrate_schema=False,
                               busy_timeout_s=self.settings.decision_log_timeout_seconds)
        s = self.settings
        if s.decision_log_writer == "process":
            self.writer = DecisionWriterProcess(
                WriterConfig(url=self.url, store_texts=s.decision_log_texts,
                             busy_timeout_s=s.decision_log_timeout_seconds, interval_s=s.decision_log_interval_seconds,
                             max_pending=s.decision_log_max_pending, drift_sample=s.decision_log_drift_sample,
                             text_retention_days=s.decision_log_text_retention_days),
                on_written=self.metrics.decisions_written.inc, on_lost=self.metrics.decisions_lost.inc,
                on_pending=self.metrics.decisions_pending.set)
        else:
            self.writer = DecisionWriter(
                self.log, max_pending=s.decision_log_max_pending, interval_s=s.decision_log_interval_seconds,
                drift_sample=s.decision_log_drift_sample,
                text_retention=timedelta(days=s.decision_log_text_retention_days),
                on_written=self.metrics.decisions_written.inc, on_lost=self.metrics.decisions_lost.inc,
                on_pending=self.metrics.decisions_pending.set, before_write=self.ensure_schema,
            )
        try:
            self.ensure_schema()
        except DecisionLogError as exc:
            self.writer.stats.degraded = True
            self.writer.stats.last_error = str(exc)
            log.error(json.dumps({"event": "decision_log_degraded", "error": str(exc)}, ensure_ascii=False))
        self.writer.start()
        log.info(json.dumps({"event": "decision_log_opened", "url": describe_url(self.url),
                             "texts": self.settings.decision_log_texts}))

    def ensure_schema(self) -> None:
        if self._schema_ready or self.log is None:
            return
        with self._schema_lock:
            if not self._schema_ready:
                from live.db import migrate

                migrate(self.log.engine)
                self._schema_ready = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.log is not None:
            self.log.close()

    # -- decisions ------------------------------------------------------------------------------------------
    @property
    def counts_drift(self) -> bool:
        """Predictions should count their unseen tokens for the log (``decision_log_drift_sample`` > 0)."""
        return self.writer is not None and self.writer.drift_every > 0

    def record(self, current: LoadedModel, results: Sequence[Mapping[str, Any]], case_ids: Sequence[str],
               request_id: str, texts: Sequence[str], coverage: Sequence[Coverage] | None = None) -> None:
        """Queue the decisions of one request; ``coverage``: each text's token counts from its prediction
        (``service.predicting.predict_records``), kept for the writer's drift sample.  The raw text goes to the
        writer only when the log stores texts (masked there, off the request path)."""
        if self.writer is None:
            return
        keep_texts = self.log is not None and self.log.store_texts
        counts = coverage if coverage is not None and len(coverage) == len(results) else [None] * len(results)
        if isinstance(self.writer, DecisionWriterProcess):
            self.writer.record([queued_decision(r, case_id=c, request_id=request_id, model_version=current.version,
                                                text=t if keep_texts else None, coverage=n)
                                for r, c, t, n in zip(results, case_ids, texts, counts, strict=True)])
            return
        pending = [Pending(Decision.from_prediction(r, case_id=c, request_id=request_id,
                                                    model_version=current.version),
                           text=t if keep_texts else None, tokens=n)
                   for r, c, t, n in zip(results, case_ids, texts, counts, strict=True)]
        self.writer.record(pending)

    def status(self) -> tuple[str, str | None]:
        """("ok" | "degraded" | "off", why)."""
        if self.writer is None:
            return "off", None
        stats = self.writer.stats
        self.metrics.decisions_pending.set(stats.pending)
        self.metrics.decision_log_degraded.set(1 if stats.degraded else 0)
        if stats.degraded:
            return "degraded", (f"the decision log cannot be written ({stats.last_error}); {stats.pending:,} "
                                f"decisions wait in memory, {stats.lost:,} lost so far; predictions go on")
        return "ok", None

    # -- corrections ----------------------------------------------------------------------------------------
    def known_labels(self, current: LoadedModel) -> dict[str, frozenset[str]]:
        known = self._known.get(current.version)
        if known is None:
            known = {t: frozenset(current.model.classes(t)) for t in current.model.targets_}
            self._known = {current.version: known}  # only the serving version's
        return known

    def correct(self, current: LoadedModel, items: Sequence[Correction]) -> list[CorrectionResult | CorrectionError]:
        """Store corrections (raises ``DecisionLogError`` when the database cannot: the caller answers 503)."""
        if self.log is None:
            raise DecisionLogError("the decision log is off (HOTLINE_DECISION_LOG=false); corrections are not "
                                   "stored")
        self.ensure_schema()
        outcomes = self.log.add_corrections(items, self.known_labels(current))
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, CorrectionResult):
                self.metrics.corrections.labels(item.source, outcome.status).inc()
                for target in outcome.new_labels:
                    self.metrics.correction_new_labels.labels(target).inc()
            else:
                self.metrics.corrections.labels(item.source, "refused").inc()
        return outcomes
