"""``POST /feedback`` and ``POST /feedback/batch``: the final labels of cases, from dispatchers (改派), agencies
returning a case (退单) and auditors.

A correction answered 2xx is in the database (written synchronously, in one transaction per request); when the
database cannot store it the answer is 503 and the client retries (the same correction again is stored once).
"""


from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from classifier.errors import DecisionLogError, UnknownCaseError
from classifier.text import is_blank
from live.log import Correction, CorrectionResult
from service.decisions import DecisionRecorder
from service.loading import LoadedModel
from service.predicting import json_response
from service.schemas import (
    AUTH_ERRORS,
    ERRORS,
    CorrectionBatchRequest,
    CorrectionBatchResponse,
    CorrectionRequest,
    CorrectionResponse,
    ErrorResponse,
)

__all__ = ["feedback_router"]

_FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: ERRORS[400],
    413: ERRORS[413],
    404: {"model": ErrorResponse, "description": "the case was never predicted and the correction has no text"},
    422: {"model": ErrorResponse, "description": "invalid correction (unknown target, label type, too early, ...)"},
    503: {"model": ErrorResponse, "description": "the decision log cannot store corrections now; retry"},
}


def _correction(item: CorrectionRequest) -> Correction:
    return Correction(case_id=item.case_id, labels=dict(item.labels), source=item.source, corrected_at=item.time,
                      text=item.text)


def _unavailable(exc: DecisionLogError) -> HTTPException:
    return HTTPException(503, detail=f"corrections cannot be stored now: {exc}; retry later (the same correction "
                         "again is stored once)", headers={"Retry-After": "5"})


def _check_texts(items: list[CorrectionRequest], limit: int) -> None:
    for item in items:
        if item.text is not None and (is_blank(item.text) or len(item.text) > limit):
            raise HTTPException(422, detail=f"case {item.case_id!r}: text must be 1 to {limit:,} characters and "
                                "not only whitespace or invisible characters")


def feedback_router(recorder: DecisionRecorder, serving_model: Callable[..., Any], auth: list[Any],
                    max_text_length: int) -> APIRouter:
    router = APIRouter()
    responses = {**_FEEDBACK_ERRORS, **(AUTH_ERRORS if auth else {})}
    Model = Annotated[LoadedModel, Depends(serving_model)]

    @router.post("/feedback", response_model=CorrectionResponse, dependencies=auth, responses=responses)
    def feedback(body: CorrectionRequest, request: Request, current: Model) -> Response:
        """The final labels of one case (any of the model's targets).  Idempotent: the same correction again
        changes nothing; a later one from the same source replaces it (the old one is kept in the history)."""
        request.scope["hotline"]["corrections"] = 1
        _check_texts([body], min(max_text_length, current.max_text_length))
        try:
            outcome = recorder.correct(current, [_correction(body)])[0]
        except DecisionLogError as exc:
            raise _unavailable(exc) from None
        if isinstance(outcome, UnknownCaseError):
            raise HTTPException(404, detail=str(outcome))
        if not isinstance(outcome, CorrectionResult):
            raise HTTPException(422, detail=str(outcome))
        return json_response(CorrectionResponse.model_validate(outcome, from_attributes=True))

    @router.post("/feedback/batch", response_model=CorrectionBatchResponse, dependencies=auth,
                 responses=responses)
    def feedback_batch(body: CorrectionBatchRequest, request: Request, current: Model) -> Response:
        """Up to 10,000 corrections in one transaction; each item gets its result or its own error (an unknown
        case, an unknown target, ...) while the others are stored."""
        request.scope["hotline"]["corrections"] = len(body.items)
        _check_texts(body.items, min(max_text_length, current.max_text_length))
        try:
            outcomes = recorder.correct(current, [_correction(i) for i in body.items])
        except DecisionLogError as exc:
            raise _unavailable(exc) from None
        results: list[dict[str, Any]] = []
        counts = {"stored": 0, "replaced": 0, "unchanged": 0, "failed": 0}
        for item, outcome in zip(body.items, outcomes, strict=True):
            if isinstance(outcome, CorrectionResult):
                results.append({"case_id": item.case_id, "result": outcome})
                counts[outcome.status] += 1
            else:
                kind = "unknown_case" if isinstance(outcome, UnknownCaseError) else "invalid_correction"
                results.append({"case_id": item.case_id, "error": {"type": kind, "message": str(outcome)}})
                counts["failed"] += 1
        return json_response(CorrectionBatchResponse.model_validate({"results": results, **counts},
                                                                    from_attributes=True))

    return router
