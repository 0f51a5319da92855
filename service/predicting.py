"""Turning request texts into response records: input checks, isolation of refused items, coalescing."""

import asyncio
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel

from classifier.errors import ComplaintInputError, PlaceHintError, UnknownTargetError
from classifier.model import prediction_record
from classifier.text import is_blank
from service.loading import LoadedModel
from service.metrics import ServiceMetrics
from service.schemas import BatchItem, ItemError


def json_response(response: BaseModel) -> Response:
    """The response, validated by its model in the route's worker thread and serialized by pydantic: FastAPI
    would validate it again in a second trip through the thread pool (the response_model still documents it)."""
    return Response(response.model_dump_json(), media_type="application/json")


def label_counts(predictions: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for p in predictions:
        for target, entry in p["targets"].items():
            per = counts.setdefault(target, {})
            per[entry["label"]] = per.get(entry["label"], 0) + 1
    return counts


def text_problem(text: str, limit: int) -> tuple[str, str] | None:
    """(error type, what is wrong) for a text the model cannot classify, or None.  Blank means as the library
    (and training) define it: zero-width, NUL and other invisible characters count as whitespace."""
    if is_blank(text):
        return "empty_text", ("is empty or whitespace only (invisible and control characters count as whitespace); "
                              "send the complaint's text")
    if len(text) > limit:
        return "text_too_long", f"has {len(text):,} characters; the limit is {limit:,}"
    return None


def check_unique_ids(items: list[BatchItem]) -> None:
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


class Refused(HTTPException):
    """A 422 for an input the model refused; ``kind`` is the error type a batch item reports."""

    def __init__(self, detail: str, kind: str) -> None:
        super().__init__(422, detail=detail)
        self.kind = kind


# what a text's drift count is: (its tokens, those the model never saw in training), or None when not counted
Coverage = tuple[int, int] | None


def predict_records(current: LoadedModel, texts: list[str], places: list[str | None], top_k: int,
                    targets: list[str] | None, explain: bool,
                    coverage: list[Coverage] | None = None) -> list[dict[str, Any]]:
    """The model's results as response dicts; a bad request (unknown target, ...) becomes a 422.

    ``coverage``: a list to which each text's token counts are appended (the decision log's drift signal, read
    off the prediction's own segmentation); None for each when the model does not count them."""
    # ``places`` only when a request has one: a model (or wrapper) written before place hints keeps working
    hints: dict[str, Any] = {"places": places} if any(p is not None for p in places) else {}
    counted: list[Coverage] = []
    if coverage is not None and current.counts_tokens:
        hints["coverage"] = counted
    try:
        raw = current.model.predict_details(texts, top_k=top_k, targets=targets, explain=explain,
                                            thresholds=current.thresholds, **hints)
    except UnknownTargetError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    except PlaceHintError as exc:
        raise Refused(str(exc), "invalid_place") from None
    except ComplaintInputError as exc:
        raise Refused(str(exc), "invalid_text") from None
    names = targets if targets is not None else list(current.model.targets_)
    if coverage is not None:  # a wrapper that takes **kwargs may not pass the list on
        coverage.extend(counted if len(counted) == len(raw) else [None] * len(raw))
    return [prediction_record(r, names, current.thresholds) for r in raw]


def predict_isolated(current: LoadedModel, texts: list[str], places: list[str | None], top_k: int,
                     targets: list[str] | None, explain: bool,
                     coverage: list[Coverage] | None = None) -> list[dict[str, Any] | ItemError]:
    """Predict a batch in one call; if the model refuses one item, find it and fail only that one.
    ``coverage`` as in ``predict_records`` (None for a failed item)."""
    try:
        counted: list[Coverage] | None = [] if coverage is not None else None
        out: list[dict[str, Any] | ItemError] = list(predict_records(current, texts, places, top_k, targets,
                                                                     explain, counted))
        if coverage is not None and counted is not None:
            coverage.extend(counted)
        return out
    except HTTPException as exc:
        if len(texts) == 1 or targets is not None and _unknown_targets(current, targets):
            raise
        out = []
        counted = [] if coverage is not None else None
        for text, place in zip(texts, places, strict=True):
            try:
                out.append(predict_records(current, [text], [place], top_k, targets, explain, counted)[0])
            except HTTPException as one:
                out.append(ItemError(type=getattr(one, "kind", "invalid_text"), message=str(one.detail)))
                if counted is not None:
                    counted.append(None)
        if all(isinstance(o, ItemError) for o in out):
            raise exc from None
        if coverage is not None and counted is not None:
            coverage.extend(counted)
        return out


class Coalescer:
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
        self._queue: list[tuple[tuple[Any, ...], LoadedModel, str, str | None, asyncio.Future[dict[str, Any]],
                                list[Coverage] | None]] = []
        self._scheduled = False

    async def predict(self, current: LoadedModel, text: str, place: str | None, top_k: int,
                      targets: list[str] | None, explain: bool,
                      coverage: list[Coverage] | None = None) -> dict[str, Any]:
        """The request's prediction record; ``coverage`` (as in ``predict_records``) gets the text's token
        counts once it is predicted."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        key = (id(current), top_k, tuple(targets) if targets is not None else None, explain)
        self._queue.append((key, current, text, place, future, coverage))
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
        for i, entry in enumerate(batch):
            groups.setdefault(entry[0], []).append(i)
        for key, members in groups.items():
            current = batch[members[0]][1]
            _, top_k, targets, explain = key
            names = list(targets) if targets is not None else None
            futures = [batch[i][4] for i in members]
            outs = [batch[i][5] for i in members]
            counted: list[Coverage] | None = [] if any(o is not None for o in outs) else None
            try:
                results = predict_records(current, [batch[i][2] for i in members],
                                          [batch[i][3] for i in members], top_k, names, explain, counted)
            except HTTPException as exc:
                if len(members) == 1 or names is not None and _unknown_targets(current, names):
                    _settle(futures, exc)
                    continue
                for i, future, out in zip(members, futures, outs, strict=True):  # find the item the model refused
                    try:
                        one_result = predict_records(current, [batch[i][2]], [batch[i][3]], top_k, names, explain,
                                                     out)
                        _settle([future], one_result[0])
                    except HTTPException as one:
                        _settle([future], one)
                continue
            except Exception as exc:  # a bug: each waiting request gets it (a 500), the worker keeps serving
                _settle(futures, exc)
                continue
            for j, (future, result, out) in enumerate(zip(futures, results, outs, strict=True)):
                if out is not None and counted is not None:
                    out.append(counted[j])
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


