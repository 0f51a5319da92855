"""Predicting files of cases: a column of a data file (``hotline predict --data FILE --text COLUMN --id COLUMN
--out FILE``) and lines of a text file (``hotline predict --file FILE``).

Every input row gives exactly one output record, in input order, carrying what joins it back: the row number
(as a spreadsheet shows it for CSV and XLSX: the header is row 1; the line number for JSONL; the position from
1 for Parquet) and, with ``--id``, the case's id.  A row that cannot be classified (empty text, too long, a bad
place hint) is an error record with its number, never a silent skip.

``predict_frame`` is the single-process batch prediction of one DataFrame (a whole file, or one partition of a
larger one: pass ``first_row``); ``predictions_table`` flattens its records for CSV/XLSX;
``write_predictions`` writes them.  ``predict_file`` reads, predicts in chunks with a progress bar, and writes.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from classifier.errors import ComplaintInputError, ConfigError, DataFormatError, MissingColumnError
from classifier.model import MAX_PLACE_HINT, prediction_record
from classifier.progress import progress_bar

from .data import _decode, read_table

__all__ = [
    "OUTPUT_FORMATS",
    "BatchSummary",
    "classify_texts",
    "first_row_number",
    "predict_frame",
    "predict_file",
    "predictions_table",
    "read_lines",
    "write_predictions",
]

OUTPUT_FORMATS = (".csv", ".xlsx", ".jsonl")
CHUNK_ROWS = 1000  # texts per model call: large enough to be fast, small enough for a smooth progress bar
EMPTY_TEXT = "empty text: no complaint to classify"


@dataclass
class BatchSummary:
    """What a batch run did: rows read, rows predicted, error records (row number -> reason, first 20)."""

    rows: int = 0
    predicted: int = 0
    errors: int = 0
    error_rows: dict[int, str] = field(default_factory=dict)
    out: str | None = None

    def sentence(self) -> str:
        line = f"predicted {self.predicted:,} of {self.rows:,} rows"
        if self.errors:
            shown = ", ".join(f"{r} ({why.split(':')[0]})" for r, why in list(self.error_rows.items())[:5])
            more = ", ..." if self.errors > 5 else ""
            line += f"; {self.errors:,} error record{'s' if self.errors != 1 else ''} (rows {shown}{more})"
        return line + (f"; wrote {self.out}" if self.out else "")


def first_row_number(path: str | Path | None) -> int:
    """The number of a file's first case as a person finds it: 2 in a spreadsheet or CSV (the header is row 1),
    1 for JSONL (its line) and Parquet (its position)."""
    suffix = Path(path).suffix.lower() if path is not None else ""
    return 2 if suffix in (".csv", ".tsv", ".txt", ".xlsx", ".xlsm") else 1


def _text_of(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _problem(text: str | None, place: str | None, max_length: int) -> str | None:
    if text is None or not text.strip():
        return EMPTY_TEXT
    if len(text) > max_length:
        return f"text too long: {len(text):,} characters, the limit is {max_length:,}"
    if place is not None and len(place) > MAX_PLACE_HINT:
        return f"place hint too long: {len(place):,} characters, the limit is {MAX_PLACE_HINT}"
    return None


def classify_texts(model: Any, texts: Sequence[str | None], *, version: str | None = None, top_k: int = 3,
                   explain: bool = False, places: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """One record per text, in order: the service's prediction shape plus ``model_version``, or
    ``{"error": reason}`` for a text that cannot be classified (empty, too long, its place hint too long)."""
    places = list(places) if places is not None else None
    out: list[dict[str, Any]] = [{} for _ in texts]
    ok: list[int] = []
    for i, text in enumerate(texts):
        why = _problem(text, places[i] if places else None, model.max_text_length)
        if why is None:
            ok.append(i)
        else:
            out[i] = {"error": why}
    if ok:
        hints = [places[i] for i in ok] if places is not None and any(places[i] for i in ok) else None
        results = model.predict_details([str(texts[i]) for i in ok], top_k=top_k, explain=explain, places=hints)
        targets = list(model.targets_)
        for i, result in zip(ok, results):
            out[i] = {**prediction_record(result, targets, default_threshold=model.review_threshold),
                      **({"model_version": version} if version else {})}
    return out


def predict_frame(model: Any, frame: pd.DataFrame, text: str, *, id_column: str | None = None,
                  place_column: str | None = None, place: str | None = None, version: str | None = None,
                  top_k: int = 3, explain: bool = False, first_row: int = 2,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Predict every row of ``frame`` in this process; one record per row, in order.

    Each record starts with ``row`` (``first_row`` for the frame's first row: 2 for a spreadsheet whose header
    is row 1; a partition of a larger file passes its own offset) and ``id`` (the ``id_column`` value, with
    it), then the prediction (``classify_texts``) or ``error``.  ``place_column``: each row's place hint for a
    routing model; ``place``: one hint for every row (the column wins where it has a value).
    """
    missing = [c for c in (text, id_column, place_column) if c and c not in frame.columns]
    if missing:
        raise MissingColumnError(f"column(s) {missing} not in the data; its columns are {list(frame.columns)}. "
                                 "Name the right ones with --text / --id / --place-column")
    texts = [_text_of(v) for v in frame[text].tolist()]
    ids = frame[id_column].tolist() if id_column else None
    hints: list[str | None] | None = None
    if place_column:
        hints = [(_text_of(v) or "").strip() or place for v in frame[place_column].tolist()]
    elif place:
        hints = [place] * len(texts)
    records: list[dict[str, Any]] = []
    bar = progress_bar(total=len(texts), desc="predicting", unit="row", enabled=progress)
    try:
        for start in range(0, len(texts), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(texts))
            chunk = classify_texts(model, texts[start:stop], version=version, top_k=top_k, explain=explain,
                                   places=hints[start:stop] if hints is not None else None)
            for k, result in enumerate(chunk, start=start):
                head: dict[str, Any] = {"row": first_row + k}
                if ids is not None:
                    head["id"] = _plain(ids[k])
                records.append({**head, **result})
            bar.update(stop - start)
    finally:
        bar.close()
    return records


def _plain(value: Any) -> Any:
    """An id as JSON and spreadsheets take it: NaN -> None, numpy scalars -> Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def predictions_table(records: Sequence[dict[str, Any]], targets: Sequence[str]) -> pd.DataFrame:
    """The records as one flat row each (for CSV and XLSX): ``row``, ``id``, then per target its label, score,
    whether it needs review and the alternatives (``label score; ...``), then ``needs_review``, the routing
    path and place when the model routes, ``model_version`` and ``error``."""
    rows = []
    routed = any("routing" in r for r in records)
    explained = any("explanation" in (r.get("targets") or {}).get(t, {}) for r in records for t in targets)
    has_id = any("id" in r for r in records)
    for r in records:
        flat: dict[str, Any] = {"row": r.get("row", r.get("line"))}
        if has_id:
            flat["id"] = r.get("id")
        entries = r.get("targets") or {}
        for t in targets:
            e = entries.get(t) or {}
            flat[t] = e.get("label")
            flat[f"{t}_score"] = e.get("score")
            flat[f"{t}_needs_review"] = e.get("needs_review")
            flat[f"{t}_alternatives"] = "; ".join(f"{a['label']} {a['score']:.3f}" for a in e.get("alternatives", [])
                                                  ) or None
            if explained:
                flat[f"{t}_because"] = ", ".join(x["term"] for x in e.get("explanation", [])) or None
        flat["needs_review"] = r.get("needs_review")
        if routed:
            routing = r.get("routing") or {}
            place = routing.get("place") or {}
            flat["routing_path"] = routing.get("path")
            flat["routing_place"] = place.get("name")
            flat["routing_place_source"] = place.get("source")
        flat["model_version"] = r.get("model_version")
        flat["error"] = r.get("error")
        rows.append(flat)
    return pd.DataFrame(rows)


def check_output_path(out: str | Path | None, data: str | Path | None = None) -> Path | None:
    """Refuse an output file of an unknown kind, or the input file itself, before any work is done."""
    if out is None:
        return None
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--out {path}: write predictions to a {', '.join(OUTPUT_FORMATS)} file (by its "
                          f"extension), got {path.suffix or 'no extension'!r}")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name ending in {', '.join(OUTPUT_FORMATS)}")
    if data is not None and Path(data).exists() and path.exists() and path.resolve() == Path(data).resolve():
        raise ConfigError(f"--out {path} is the input file; write the predictions to a new file")
    return path


def write_predictions(records: Sequence[dict[str, Any]], out: str | Path, targets: Sequence[str]) -> Path:
    """Write ``records`` to ``out`` by its extension: ``.jsonl`` (the nested records, one per line), ``.csv``
    (flat, UTF-8 with a BOM so Excel reads the Chinese) or ``.xlsx`` (flat).  Written to a temporary file and
    renamed, so a failed run never leaves half a file under the name."""
    path = check_output_path(out)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif suffix == ".csv":
            predictions_table(records, targets).to_csv(tmp, index=False, encoding="utf-8-sig")
        else:
            predictions_table(records, targets).to_excel(tmp, index=False, sheet_name="predictions")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def predict_file(model: Any, data: str | Path, text: str, *, out: str | Path | None = None,
                 id_column: str | None = None, place_column: str | None = None, place: str | None = None,
                 version: str | None = None, top_k: int = 3, explain: bool = False, encoding: str | None = None,
                 progress: bool = False, emit: Callable[[str], None] | None = None) -> BatchSummary:
    """Read ``data`` (CSV UTF-8/GBK, XLSX, JSONL, Parquet), predict its ``text`` column and write ``out``
    (``.csv``, ``.xlsx``, ``.jsonl``); without ``out`` each record goes to ``emit`` as a JSON line (default:
    stdout)."""
    out_path = check_output_path(out, data)
    frame = read_table(data, encoding=encoding)
    records = predict_frame(model, frame, text, id_column=id_column, place_column=place_column, place=place,
                            version=version, top_k=top_k, explain=explain, first_row=first_row_number(data),
                            progress=progress)
    summary = BatchSummary(rows=len(records))
    for r in records:
        if "error" in r:
            summary.errors += 1
            if len(summary.error_rows) < 20:
                summary.error_rows[int(r["row"])] = r["error"]
    summary.predicted = summary.rows - summary.errors
    if out_path is not None:
        summary.out = str(write_predictions(records, out_path, list(model.targets_)))
    else:
        write = emit or (lambda line: print(line))
        for r in records:
            write(json.dumps(r, ensure_ascii=False))
    return summary


def read_lines(path: str | Path | None, encoding: str | None = None) -> list[str]:
    """The lines of a text file (UTF-8 or GBK/GB18030, detected, or ``encoding``), or of stdin (``None`` or
    ``-``), blank ones included: each line is one case and keeps its number."""
    if path is None or str(path) == "-":
        return sys.stdin.read().splitlines()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ComplaintInputError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ComplaintInputError(f"{path} is a folder; give a text file with one complaint per line") from None
    try:
        text, _ = _decode(raw, encoding, path)
    except DataFormatError as exc:
        raise ComplaintInputError(str(exc)) from None
    return text.splitlines()
