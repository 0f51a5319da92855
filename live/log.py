"""The decision log: what the service decided, and what dispatchers, agencies and auditors said was right.

``DecisionLog`` is the one object that reads and writes it, from the service (decisions in batches off the
request path, corrections synchronously), the command line (``hotline feedback``, ``hotline decisions``) and
notebooks.  Text is personal data: it is stored only when the log is opened with ``store_texts=True``, only
masked (``classifier.text.mask_pii``), and ``purge_texts`` / ``purge`` remove it after a retention period.

A correction is ``(case id, source, {target: label})``.  Per (case, source, target) the log keeps one current
label: the same correction again changes nothing, a different one replaces it and the replaced one goes to
``correction_history``.  A case's *final* label for a target is its latest correction (by the time it was
made; at the same time an audit outranks an agency's return, which outranks the dispatcher), and it is copied
into every prediction of that case (``predictions.truth``) so that live accuracy is one table scan.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from classifier.errors import CorrectionError, DecisionLogError, UnknownCaseError
from classifier.text import mask_pii
from live.db import describe_url, migrate, open_engine
from live.schema import (
    MAX_CASE_ID,
    MAX_LABEL,
    SOURCES,
    TALLY_SECONDS,
    correction_history,
    corrections,
    decisions,
    prediction_tallies,
    predictions,
)

if TYPE_CHECKING:
    import pandas as pd

# SQLite's default limit of bound parameters per statement before 3.32 (999; 32,766 since): the smaller, so
# that a log works with any SQLite a Python links
SQL_VARIABLES_PER_STATEMENT = 999

__all__ = ["DecisionLog", "Decision", "TargetDecision", "Correction", "CorrectionResult", "utc_now", "as_utc",
           "SOURCE_RANK", "MAX_CORRECTIONS_PER_BATCH", "CLOCK_SKEW"]

SOURCE_RANK = {"dispatcher": 1, "agency_return": 2, "audit": 3}
MAX_CORRECTIONS_PER_BATCH = 10_000
# a correction stamped this much before the prediction it corrects is still accepted: two systems' clocks differ
CLOCK_SKEW = timedelta(minutes=5)
_DECISION_KEYS = ("id", "case_id", "request_id", "created_at", "model_version", "needs_review", "routing_path",
                  "place_source", "n_tokens", "n_unseen", "text")
_PREDICTION_KEYS = ("decision_id", "case_id", "created_at", "model_version", "target", "label", "score",
                    "needs_review")
_TALLY_KEYS = ("hour", "model_version", "target", "label", "needs_review", "n")
# a batch's tallies add to the rows already there (the same statement in SQLite and PostgreSQL)
_TALLY_UPSERT = (" ON CONFLICT (hour, model_version, target, label, needs_review) "
                 "DO UPDATE SET n = prediction_tallies.n + excluded.n")
_CHUNK = 500  # rows per IN (...) lookup: under SQLite's and PostgreSQL's parameter limits


def _new_id_run() -> int:
    """Where a log's run of decision ids starts: random, with 2^62 ids of room below the 63-bit limit."""
    return secrets.randbits(62)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _tally_boundary(moment: datetime) -> datetime:
    """The first start of a tally period (an hour, UTC) at or after ``moment``."""
    moment = as_utc(moment)
    floor = datetime.fromtimestamp(int(moment.timestamp()) // TALLY_SECONDS * TALLY_SECONDS, UTC)
    return floor if floor == moment else floor + timedelta(seconds=TALLY_SECONDS)


def as_utc(value: datetime) -> datetime:
    """A time in UTC, as the log keeps every time (a naive one is taken as UTC: SQLite hands them back so)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class TargetDecision:
    target: str
    label: str
    score: float
    needs_review: bool


@dataclass
class Decision:
    """One prediction as the log keeps it (``text``: the masked text, or None)."""

    case_id: str
    request_id: str
    model_version: str
    needs_review: bool
    labels: tuple[TargetDecision, ...]
    created_at: datetime = field(default_factory=utc_now)
    routing_path: str | None = None
    place_source: str | None = None
    n_tokens: int | None = None
    n_unseen: int | None = None
    text: str | None = None

    @classmethod
    def from_prediction(cls, record: Mapping[str, Any], *, case_id: str, request_id: str, model_version: str,
                        created_at: datetime | None = None) -> Decision:
        """From a prediction record (``classifier.model.prediction_record``, what the service answers)."""
        routing = record.get("routing") or {}
        place = routing.get("place") if isinstance(routing, dict) else None
        source = place.get("source") if isinstance(place, dict) else None
        labels = tuple(TargetDecision(t, str(e["label"]), float(e["score"]), bool(e["needs_review"]))
                       for t, e in record["targets"].items())
        return cls(case_id=case_id, request_id=request_id, model_version=model_version,
                   needs_review=bool(record["needs_review"]), labels=labels, created_at=created_at or utc_now(),
                   routing_path=routing.get("path") if isinstance(routing, dict) else None,
                   place_source=str(source) if source is not None else None)


@dataclass(frozen=True)
class Correction:
    """The final labels of a case from one source (``labels``: any of the model's targets, e.g. only the
    agency).  ``text`` is for a case the service never saw; ``corrected_at`` defaults to when it is stored."""

    case_id: str
    labels: Mapping[str, str]
    source: str
    corrected_at: datetime | None = None
    text: str | None = None


@dataclass
class CorrectionResult:
    case_id: str
    status: str                      # stored / replaced / unchanged (the strongest of its targets')
    targets: dict[str, str]          # per target: stored / replaced / unchanged
    new_labels: list[str]            # targets whose label the model does not know (a new or renamed agency)
    case_seen: bool                  # the service predicted this case (else it came with its text)


class DecisionLog:
    """The log in a database (``url``: SQLite file or PostgreSQL), migrated to the current schema on open."""

    def __init__(self, url: str, *, store_texts: bool = False, migrate_schema: bool = True,
                 busy_timeout_s: float = 5.0) -> None:
        self.url = url
        self.store_texts = store_texts
        self.engine: Engine = open_engine(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=busy_timeout_s)
        self._next_id = _new_id_run()
        self._insert_sql: dict[tuple[str, tuple[str, ...]], tuple[str, Any, list[int] | None]] = {}
        if migrate_schema:
            migrate(self.engine)

    def __repr__(self) -> str:
        return f"DecisionLog({describe_url(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def _fail(self, what: str, exc: SQLAlchemyError) -> DecisionLogError:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return DecisionLogError(f"cannot {what} the decision log at {describe_url(self.url)}: "
                                f"{type(exc).__name__}: {reason}")

    # -- decisions --------------------------------------------------------------------------------------
    def write_decisions(self, batch: Sequence[Decision]) -> int:
        """Insert decisions and their per-target predictions in one transaction; returns how many.

        The rows go to the driver's ``executemany`` as they are (no per-row SQLAlchemy processing: a decision
        costs the writer thread about a tenth of what it did through ``Connection.execute``), and each decision
        gets its id from this log's own run of ids (``_next_id``), so no ``RETURNING`` round trip is needed.
        A run starts at a random 62-bit number, so replicas writing one log keep apart; within it ids are
        consecutive, so a batch's rows land on the last pages of the table and its indexes instead of a random
        page each (random ids made each commit write a page per decision once the log outgrew the cache:
        BENCHMARKS.md, issue 13).  Should two runs ever meet, the batch is retried once on a new run."""
        if not batch:
            return 0
        try:
            return self._write_decisions(batch)
        except IntegrityError:  # another replica's run of ids: start a new one (nothing of the batch was kept)
            self._next_id = _new_id_run()
        try:
            return self._write_decisions(batch)
        except IntegrityError as exc:
            raise self._fail("write to", exc) from None

    def _write_decisions(self, batch: Sequence[Decision]) -> int:
        when = self._datetime_processor()
        texts = self.store_texts
        dec_rows: list[tuple[Any, ...]] = []
        pred_rows: list[tuple[Any, ...]] = []
        tallies: dict[tuple[Any, ...], int] = {}
        for i, d in enumerate(batch):
            if i % 32 == 31:
                time.sleep(0)  # give the GIL to a waiting request thread (live.writer.YIELD_EVERY)
            decision_id = self._next_id
            self._next_id += 1
            case_id = d.case_id[:MAX_CASE_ID]
            at = d.created_at if d.created_at.tzinfo is UTC else as_utc(d.created_at)
            created = when(at)
            hour = int(at.timestamp()) // TALLY_SECONDS
            version = d.model_version
            dec_rows.append((decision_id, case_id, d.request_id[:64], created, version, d.needs_review,
                             d.routing_path, d.place_source, d.n_tokens, d.n_unseen, d.text if texts else None))
            for t in d.labels:
                label = t.label[:MAX_LABEL]
                pred_rows.append((decision_id, case_id, created, version, t.target, label, t.score,
                                  t.needs_review))
                key = (hour, version, t.target, label, t.needs_review)
                tallies[key] = tallies.get(key, 0) + 1
        try:
            with self.engine.begin() as conn:
                self._executemany(conn, decisions, _DECISION_KEYS, dec_rows)
                if pred_rows:
                    self._executemany(conn, predictions, _PREDICTION_KEYS, pred_rows)
                    self._executemany(conn, prediction_tallies, _TALLY_KEYS,
                                      [(*k, n) for k, n in tallies.items()], _TALLY_UPSERT)
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise self._fail("write to", exc) from None
        return len(batch)

    def _datetime_processor(self) -> Callable[[datetime], Any]:
        """What the dialect stores for a datetime (SQLite: SQLAlchemy's text format, so reads parse it back)."""
        proc = decisions.c.created_at.type.dialect_impl(self.engine.dialect).bind_processor(self.engine.dialect)
        return proc if proc is not None else (lambda v: v)

    def _executemany(self, conn: Any, table: Any, keys: tuple[str, ...], rows: list[tuple[Any, ...]],
                     suffix: str = "") -> None:
        """Insert ``rows`` (tuples of the columns ``keys``) through the driver; ``suffix`` ends each statement
        (an ``ON CONFLICT`` clause).

        With a positional driver (SQLite) the rows go as multi-row ``INSERT ... VALUES (...), (...)`` statements
        of up to ``SQL_VARIABLES_PER_STATEMENT`` parameters: ``executemany`` would step SQLite once a row and
        take the GIL back after each step, which the request threads of the service then wait for (the log's
        cost to the p99, BENCHMARKS.md); one statement per ~90 rows takes it back ~90 times less often.  The
        parameters are the rows' tuples laid end to end (no dict per row: the writer thread's Python work is
        what a request waits for).  PostgreSQL's driver (named parameters) pipelines ``executemany`` itself."""
        key = (table.name, keys)
        compiled = self._insert_sql.get(key)
        if compiled is None:
            c = insert(table).compile(dialect=self.engine.dialect, column_keys=list(keys))
            order = c.positiontup
            # the statement's parameter order, as positions in ``keys`` (None: the same order)
            perm = None if not order or tuple(order) == keys else [keys.index(k) for k in order]
            compiled = self._insert_sql[key] = (c.string, order, perm)
        sql, order, perm = compiled
        if not order:
            conn.exec_driver_sql(sql + suffix, [dict(zip(keys, r, strict=True)) for r in rows])
            return
        if perm is not None:
            rows = [tuple(r[i] for i in perm) for r in rows]
        per = max(1, SQL_VARIABLES_PER_STATEMENT // len(order))
        head, _, group = sql.rpartition(" VALUES ")
        statements: dict[int, str] = {}
        for start in range(0, len(rows), per):
            part = rows[start:start + per]
            statement = statements.get(len(part))
            if statement is None:
                statement = statements[len(part)] = f"{head} VALUES {', '.join([group] * len(part))}{suffix}"
            conn.exec_driver_sql(statement, tuple(chain.from_iterable(part)))

    # -- corrections ------------------------------------------------------------------------------------
    def add_corrections(self, batch: Sequence[Correction], known_labels: Mapping[str, Collection[str]],
                        now: datetime | None = None) -> list[CorrectionResult | CorrectionError]:
        """Store corrections in one transaction: each item gets its result or its own error (an unknown case,
        an unknown target, ...), the others are stored.  ``known_labels``: the serving model's labels per
        target (the targets a correction may name; a label outside them is stored and counted as new).
        Raises ``DecisionLogError`` when the database cannot store them (nothing is stored then)."""
        if len(batch) > MAX_CORRECTIONS_PER_BATCH:
            raise CorrectionError(f"{len(batch):,} corrections in one batch; the limit is "
                                  f"{MAX_CORRECTIONS_PER_BATCH:,}; split it")
        now = now or utc_now()
        outcomes: list[CorrectionResult | CorrectionError | None] = [None] * len(batch)
        for i, c in enumerate(batch):
            problem = _correction_problem(c, known_labels)
            if problem is not None:
                outcomes[i] = problem
        valid = [i for i, o in enumerate(outcomes) if o is None]
        try:
            with self.engine.begin() as conn:
                self._store_corrections(conn, batch, valid, outcomes, known_labels, now)
        except SQLAlchemyError as exc:
            raise self._fail("store corrections in", exc) from None
        return [o for o in outcomes if o is not None]

    def _store_corrections(self, conn: Any, batch: Sequence[Correction], valid: list[int],
                           outcomes: list[Any], known_labels: Mapping[str, Collection[str]], now: datetime) -> None:
        case_ids = sorted({batch[i].case_id for i in valid})
        first_seen: dict[str, datetime] = {}  # the case's first prediction
        for chunk in _chunks(case_ids):
            for case_id, created in conn.execute(
                    select(decisions.c.case_id, func.min(decisions.c.created_at))
                    .where(decisions.c.case_id.in_(chunk)).group_by(decisions.c.case_id)):
                first_seen[case_id] = _utc(created)  # type: ignore[assignment]
        # the current correction of each (case, source, target) in the batch, and cases known only by text
        current: dict[tuple[str, str, str], dict[str, Any]] = {}
        texted: set[str] = set()
        for chunk in _chunks(case_ids):
            for row in conn.execute(select(corrections).where(corrections.c.case_id.in_(chunk))).mappings():
                current[(row["case_id"], row["source"], row["target"])] = dict(row)
                if row["text"] is not None or row["case_id"] not in first_seen:
                    texted.add(row["case_id"])
        inserts: dict[tuple[str, str, str], dict[str, Any]] = {}
        updates: dict[tuple[str, str, str], dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        touched: set[tuple[str, str]] = set()
        for i in valid:
            c = batch[i]
            seen = c.case_id in first_seen
            if not seen and c.text is None and c.case_id not in texted:
                outcomes[i] = UnknownCaseError(
                    f"case {c.case_id!r} was never predicted by the service and the correction has no text; "
                    "send the case's text with it (\"text\"), or the case id the prediction was made with")
                continue
            when = _utc(c.corrected_at) or now
            if seen and when < first_seen[c.case_id] - CLOCK_SKEW:
                outcomes[i] = CorrectionError(
                    f"case {c.case_id!r}: the correction is dated {when.isoformat()}, before the prediction it "
                    f"corrects ({first_seen[c.case_id].isoformat()}); send the time the case was corrected")
                continue
            if not seen:
                texted.add(c.case_id)
            text = mask_pii(c.text) if (c.text is not None and self.store_texts) else None
            statuses: dict[str, str] = {}
            for target, label in c.labels.items():
                key = (c.case_id, c.source, target)
                row = {"case_id": c.case_id, "source": c.source, "target": target, "label": label,
                       "corrected_at": when, "received_at": now, "known_label": label in known_labels[target],
                       "text": text}
                old = current.get(key)
                if old is None:
                    statuses[target] = "stored"
                    inserts[key] = row
                elif old["label"] == label:
                    statuses[target] = "unchanged"
                    continue
                else:
                    statuses[target] = "replaced"
                    history.append({k: old[k] for k in ("case_id", "source", "target", "label")}
                                   | {"corrected_at": _utc(old["corrected_at"]),
                                      "received_at": _utc(old["received_at"]), "replaced_at": now})
                    if key in inserts:  # replaced within this batch: insert the newer one instead
                        inserts[key] = row
                    else:
                        updates[key] = row
                current[key] = row
                touched.add((c.case_id, target))
            status = ("replaced" if "replaced" in statuses.values()
                      else "stored" if "stored" in statuses.values() else "unchanged")
            outcomes[i] = CorrectionResult(
                case_id=c.case_id, status=status, targets=statuses, case_seen=seen,
                new_labels=sorted(t for t, label in c.labels.items() if label not in known_labels[t]))
        if history:
            conn.execute(insert(correction_history), history)
        if inserts:
            conn.execute(insert(corrections), list(inserts.values()))
        for row in updates.values():
            conn.execute(update(corrections).where(and_(
                corrections.c.case_id == row["case_id"], corrections.c.source == row["source"],
                corrections.c.target == row["target"])).values(
                label=row["label"], corrected_at=row["corrected_at"], received_at=row["received_at"],
                known_label=row["known_label"], text=row["text"]))
        self._refresh_truth(conn, sorted(touched), current)

    @staticmethod
    def _refresh_truth(conn: Any, touched: list[tuple[str, str]],
                       current: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> None:
        """Copy each touched (case, target)'s final label into its predictions."""
        if not touched:
            return
        by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for (case_id, _, target), row in current.items():
            by_pair.setdefault((case_id, target), []).append(row)
        rows = []
        for pair in touched:
            final = max(by_pair[pair], key=lambda r: (_utc(r["corrected_at"]), SOURCE_RANK[r["source"]]))
            rows.append({"k_case": pair[0], "k_target": pair[1], "truth": final["label"],
                         "truth_source": final["source"], "truth_known": final["known_label"]})
        conn.execute(update(predictions).where(and_(predictions.c.case_id == bindparam("k_case"),
                                                    predictions.c.target == bindparam("k_target")))
                     .values(truth=bindparam("truth"), truth_source=bindparam("truth_source"),
                             truth_known=bindparam("truth_known")), rows)

    # -- reading ----------------------------------------------------------------------------------------
    def labeled_cases(self, since: datetime | None = None, until: datetime | None = None,
                      targets: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per corrected case, ready for ``hotline train``: ``case_id``, ``text`` (masked, where the log
        stored it; else empty), one column per target with its final label, ``source`` and ``time`` of the
        case's latest correction.  ``since``/``until`` select by the time the cases were corrected."""
        import pandas as pd  # here, not at the top: the writer process never reads (its start stays short)

        cond = []
        if since is not None:
            cond.append(corrections.c.corrected_at >= since)
        if until is not None:
            cond.append(corrections.c.corrected_at < until)
        query = select(corrections.c.case_id, corrections.c.source, corrections.c.target, corrections.c.label,
                       corrections.c.corrected_at, corrections.c.text).where(*cond)
        try:
            with self.engine.connect() as conn:
                rows = pd.DataFrame(conn.execute(query).all(),
                                    columns=["case_id", "source", "target", "label", "time", "text"])
                texts = self._texts(conn, sorted(set(rows["case_id"])))
        except SQLAlchemyError as exc:
            raise self._fail("read", exc) from None
        wanted = sorted(set(rows["target"])) if targets is None else list(targets)
        columns = ["case_id", "text", *wanted, "source", "time"]
        if rows.empty:
            return pd.DataFrame(columns=columns)
        rows["time"] = pd.to_datetime(rows["time"], utc=True)
        rows["rank"] = rows["source"].map(SOURCE_RANK)
        final = rows.sort_values(["time", "rank"]).groupby(["case_id", "target"], sort=False).tail(1)
        labels = final.pivot(index="case_id", columns="target", values="label")
        latest = rows.sort_values(["time", "rank"]).groupby("case_id").tail(1).set_index("case_id")
        out = pd.DataFrame(index=labels.index)
        given = rows.dropna(subset=["text"]).groupby("case_id")["text"].last()
        out["text"] = [texts.get(c) or given.get(c) or "" for c in out.index]
        for t in wanted:
            out[t] = labels[t] if t in labels else None
        out["source"] = latest["source"]
        out["time"] = latest["time"]
        return out.reset_index().sort_values(["time", "case_id"], kind="stable").reset_index(drop=True)[columns]

    @staticmethod
    def _texts(conn: Any, case_ids: list[str]) -> dict[str, str]:
        """Each case's latest stored (masked) text among its decisions."""
        out: dict[str, str] = {}
        for chunk in _chunks(case_ids):
            for case_id, text in conn.execute(
                    select(decisions.c.case_id, decisions.c.text)
                    .where(decisions.c.case_id.in_(chunk), decisions.c.text.is_not(None))
                    .order_by(decisions.c.created_at)):
                out[case_id] = text
        return out

    def counts(self) -> dict[str, int]:
        """How many decisions, predictions, corrections and replaced corrections the log holds."""
        try:
            with self.engine.connect() as conn:
                return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                        for t in (decisions, predictions, corrections, correction_history)}
        except SQLAlchemyError as exc:
            raise self._fail("read", exc) from None

    def ping(self) -> None:
        """Raise ``DecisionLogError`` unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError as exc:
            raise self._fail("reach", exc) from None

    # -- retention --------------------------------------------------------------------------------------
    def purge_texts(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Blank the stored texts of decisions and corrections older than ``older_than``; returns how many."""
        cutoff = (now or utc_now()) - older_than
        try:
            with self.engine.begin() as conn:
                a = conn.execute(update(decisions).where(decisions.c.created_at < cutoff,
                                                         decisions.c.text.is_not(None)).values(text=None))
                b = conn.execute(update(corrections).where(corrections.c.received_at < cutoff,
                                                           corrections.c.text.is_not(None)).values(text=None))
                return int(a.rowcount or 0) + int(b.rowcount or 0)
        except SQLAlchemyError as exc:
            raise self._fail("purge", exc) from None

    def purge(self, older_than: timedelta, now: datetime | None = None) -> dict[str, int]:
        """Delete decisions (and their predictions and tallies) and replaced corrections older than
        ``older_than``, and blank older corrections' texts.  Current corrections stay: they are the cases'
        labels, the training data of the next model, and hold no text after this.  Decisions go by whole hours
        (the tallies' period): the cutoff is rounded up to the next full hour, so at most an hour more goes."""
        cutoff = _tally_boundary((now or utc_now()) - older_than)
        try:
            with self.engine.begin() as conn:
                old = select(decisions.c.id).where(decisions.c.created_at < cutoff)
                n_pred = conn.execute(delete(predictions).where(predictions.c.decision_id.in_(old))).rowcount
                n_dec = conn.execute(delete(decisions).where(decisions.c.created_at < cutoff)).rowcount
                conn.execute(delete(prediction_tallies).where(
                    prediction_tallies.c.hour < int(cutoff.timestamp()) // TALLY_SECONDS))
                n_hist = conn.execute(delete(correction_history)
                                      .where(correction_history.c.replaced_at < cutoff)).rowcount
                n_text = conn.execute(update(corrections).where(
                    corrections.c.received_at < cutoff, corrections.c.text.is_not(None)).values(text=None)).rowcount
        except SQLAlchemyError as exc:
            raise self._fail("purge", exc) from None
        return {"decisions": int(n_dec or 0), "predictions": int(n_pred or 0),
                "replaced_corrections": int(n_hist or 0), "correction_texts": int(n_text or 0)}


def _correction_problem(c: Correction, known_labels: Mapping[str, Collection[str]]) -> CorrectionError | None:
    if not isinstance(c.case_id, str) or not c.case_id.strip() or len(c.case_id) > MAX_CASE_ID:
        return CorrectionError(f"case id must be 1 to {MAX_CASE_ID} characters, got "
                               f"{len(c.case_id) if isinstance(c.case_id, str) else type(c.case_id).__name__}")
    if c.source not in SOURCES:
        return CorrectionError(f"case {c.case_id!r}: source must be one of {list(SOURCES)}, got {c.source!r}")
    if not c.labels:
        return CorrectionError(f"case {c.case_id!r}: no labels; send at least one target's final label, "
                               f"e.g. {{\"{next(iter(known_labels), 'agency')}\": \"...\"}}")
    unknown = sorted(set(c.labels) - set(known_labels))
    if unknown:
        return CorrectionError(f"case {c.case_id!r}: unknown targets {unknown}; the model predicts "
                               f"{sorted(known_labels)}")
    for target, label in c.labels.items():
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
            return CorrectionError(f"case {c.case_id!r}: the {target} label must be text of 1 to {MAX_LABEL} "
                                   f"characters, got {label!r}"[:300])
    return None


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

