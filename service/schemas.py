"""Request and response bodies of every route (pydantic), with their bounds and documentation.

Every response body is a ``ResponseBody``: an optional part is absent, never null, in the JSON and in the
OpenAPI schema alike (``routing`` on a model without routing, a routing's ``reason``, a place's ``town``).  Times
are ISO 8601 with a time zone.
"""

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from classifier.model import MAX_PLACE_HINT
from live.log import MAX_CORRECTIONS_PER_BATCH
from live.schema import MAX_CASE_ID, MAX_LABEL, MAX_TARGET
from service.settings import MAX_TOP_K


# -- response bodies: optional parts absent, not null -----------------------------------------------------------
def _optional_is_absent(schema: dict[str, Any], cls: Any = None) -> None:
    """In a response body's JSON schema, a property that may be left out is not also nullable."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            continue
        any_of = prop.get("anyOf")
        if any_of and {"type": "null"} in any_of:
            rest = [s for s in any_of if s != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class ResponseBody(BaseModel):
    """A response: fields that are None are left out of the JSON (and are not nullable in the schema)."""

    model_config = ConfigDict(json_schema_extra=_optional_is_absent)

    # no return annotation: the JSON schema in serialization mode stays the model's own
    @model_serializer(mode="wrap")
    def _leave_out_none(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# -- request and response models ------------------------------------------------------------------------------
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K, description="how many ranked labels per target")]
TargetNames = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]] | None,
                        Field(min_length=1, max_length=20, description="targets to predict (default: all)")]


PlaceHint = Annotated[str | None, Field(
    max_length=MAX_PLACE_HINT, description="where the case is, as the caller knows it (the form's district, the "
    "county whose line was called: 海原县, 海原县李旺镇); a routing model uses it when the text names no county or "
    "town itself; refused (422) by a model without routing")]

CaseId = Annotated[str, Field(min_length=1, max_length=MAX_CASE_ID, pattern=r"^[^\x00-\x1f\x7f]+$",
                              description="the work-order system's case id (no control characters)")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="the complaint text; its limit is in GET /model")
    place: PlaceHint = None
    top_k: TopK = 3
    explain: bool = Field(default=False, description="add the terms behind each label")
    targets: TargetNames = None
    case_id: CaseId | None = Field(default=None, description="the work-order system's case id, recorded with the "
                                   "decision so that corrections (POST /feedback) can name it; default: the "
                                   "request id")


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="the caller's id, echoed in the result")
    text: str
    place: PlaceHint = None
    case_id: CaseId | None = Field(default=None, description="the case id recorded with the decision; default: "
                                   "\"<request id>:<id>\"")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, description="the limit on their number is in GET /model")
    top_k: TopK = 3
    explain: bool = False
    targets: TargetNames = None


class Alternative(ResponseBody):
    label: str
    score: float


class ExplanationTerm(ResponseBody):
    term: str
    kind: str = Field(description="word, char, lead word or lead char (lead: among the text's first characters)")
    weight: float


class TargetPrediction(ResponseBody):
    model_config = ConfigDict(extra="allow")

    label: str
    score: float = Field(description="calibrated probability of the label")
    threshold: float = Field(description="the review threshold for this target")
    needs_review: bool = Field(description="score is under the threshold, or a routed agency whose county neither "
                               "the text nor the place hint decided (see review_reason)")
    review_reason: str | None = Field(default=None, description="why a person must check this label whatever its "
                                      "score (e.g. a guessed county); absent otherwise")
    alternatives: list[Alternative]
    # absent unless asked for ("explain": true), as in `hotline predict --json`: one shape for both
    explanation: list[ExplanationTerm] | None = Field(default=None, description="the terms behind the label; "
                                                      "only when asked for (\"explain\": true)")


class RoutingPlace(ResponseBody):
    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, description="the place the agency was looked up for (a town or a "
                             "county); absent when none was decided")
    level: str = Field(description="town, county, city or unknown")
    city: str | None = Field(default=None, description="the prefecture city, when known")
    county: str | None = Field(default=None, description="the county-level division, when known")
    town: str | None = Field(default=None, description="the town, township or street office, when known")
    score: float = Field(description="how sure the place is: the share of the place evidence that agrees (1.0 when "
                         "the text names it), or the county model's probability for a guess")
    mentions: list[str] = Field(default_factory=list, description="the place names found in the text")
    ambiguous: list[str] = Field(default_factory=list, description="names found in several places that nothing "
                                 "else in the text settled")
    source: str = Field(description="where the place came from: gazetteer (named in the text), hint (the request's "
                        "place hint) or model (guessed by the county model)")


class RoutingFunction(ResponseBody):
    model_config = ConfigDict(extra="allow")

    label: str = Field(description="the agency function asked for (traffic_police, housing, town_gov, ...)")
    score: float = Field(description="its probability")


class Routing(ResponseBody):
    """How a routing model chose the agency: from the place and the function through the directory, or from the
    flat agency model."""

    model_config = ConfigDict(extra="allow")

    path: Literal["directory", "flat"] = Field(description="directory: the agency was looked up by place and "
                                               "function; flat: the flat agency model answered")
    place: RoutingPlace
    function: RoutingFunction
    reason: str | None = Field(default=None, description="why the routing was not straightforward (a guessed "
                               "place, an unusable hint, no such agency in the directory); absent when it was")


class PredictionWarning(ResponseBody):
    type: Literal["place_hint_ignored"] = Field(description="place_hint_ignored: the request's place names no "
                                                "county, town or city of the routing directory, so it decided "
                                                "nothing (the place came from the text or the county model)")
    message: str


class Prediction(ResponseBody):
    # a routing wrapper (jurisdiction routing) adds keys to each result: they pass through
    model_config = ConfigDict(extra="allow")

    targets: dict[str, TargetPrediction]
    needs_review: bool = Field(description="true when any target's score is under its threshold")
    routing: Routing | None = Field(default=None, description="how the agency was routed; present only when the "
                                    "model is a routing model")
    warnings: list[PredictionWarning] | None = Field(default=None, description="what in the request was not used, "
                                                     "and why; absent when there is nothing to say")


class PredictResponse(Prediction):
    model_version: str
    request_id: str


class ItemError(ResponseBody):
    type: str
    message: str


class BatchResult(ResponseBody):
    id: str
    prediction: Prediction | None = None
    error: ItemError | None = None


class BatchResponse(ResponseBody):
    model_version: str
    request_id: str
    results: list[BatchResult]
    failed: int = Field(description="how many items have an error instead of a prediction")


class HealthResponse(ResponseBody):
    status: Literal["ok"]


class WorkerInfo(ResponseBody):
    pid: int
    version: str = Field(description="the model version this worker serves")
    since: AwareDatetime = Field(description="when it started serving it")


class ReadyResponse(ResponseBody):
    ready: bool
    model_version: str | None = Field(default=None, description="the version of the worker that answered")
    detail: str | None = None
    workers: list[WorkerInfo] | None = Field(default=None, description="every worker's version (one entry "
                                             "per worker process); after a reload they all name the new one")
    decision_log: Literal["ok", "degraded", "off"] = Field(default="off", description="degraded: decisions cannot "
                                                           "be written now (they wait in memory; predictions go "
                                                           "on) and corrections get 503")


class HeadInfo(ResponseBody):
    kind: Literal["fused", "svm"] = Field(description="fused: word-block SVM + char-block SVM + naive Bayes "
                                          "with fitted view weights; svm: one linear SVM with a temperature")
    classes: int
    fusion_weights: dict[str, float] | None = None
    temperature: float
    features_used: int | None = Field(default=None, description="features with a weight for some class (fewer "
                                      "than the vectorizer's for a target labeled on part of the texts); None "
                                      "for models saved before it was recorded")


class TargetInfo(ResponseBody):
    labels: list[str]
    threshold: float
    metrics: dict[str, float] = Field(description="hold-out metrics from training (accuracy, macro_f1, ...)")
    head: HeadInfo | None = Field(default=None, description="how the target's text head turns features into "
                                  "probabilities (a routed agency is computed from its heads and the directory)")


class ModelInfo(ResponseBody):
    version: str
    trained_at: AwareDatetime | None = Field(default=None, description="when the version was trained (ISO 8601)")
    loaded_at: AwareDatetime = Field(description="when this process loaded it (ISO 8601)")
    training_rows: int | None = Field(default=None, description="rows the version was trained on")
    targets: dict[str, TargetInfo]
    max_text_length: int
    max_batch_size: int
    max_top_k: int
    default_place: str | None = Field(default=None, description="the place hint used when a request sends none "
                                      "(HOTLINE_DEFAULT_PLACE); absent when there is none")
    routing: dict[str, Any] | None = Field(default=None, description="a routing model's directory and how it "
                                           "decides (agencies, category-function pairs, the county guesses' "
                                           "calibration); absent for a model without routing")


class ReloadResponse(ResponseBody):
    reloaded: bool
    version: str | None = Field(default=None, description="the version serving now")
    previous_version: str | None = Field(default=None, description="the version that served before; absent when "
                                         "none did")
    detail: str | None = Field(default=None, description="why a reload failed, or that the switch is in progress")
    complete: bool = Field(default=True, description="every worker serves `version` (false: the switch is in "
                           "progress or a worker could not switch; `workers` and GET /ready say which)")
    workers: list[WorkerInfo] | None = Field(default=None, description="each worker's version when the answer "
                                             "was given")


class FieldError(ResponseBody):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(ResponseBody):
    detail: str
    errors: list[FieldError] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not UTF-8"},
    413: {"model": ErrorResponse, "description": "the body is larger than HOTLINE_MAX_REQUEST_BYTES"},
    422: {"model": ErrorResponse, "description": "invalid input; `detail` says what and how to fix it"},
    503: {"model": ErrorResponse, "description": "no model loaded"},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse, "description": "missing or wrong key"}}



# -- the decision log: corrections and live quality -----------------------------------------------------------
TargetName = Annotated[str, Field(min_length=1, max_length=MAX_TARGET)]
LabelText = Annotated[str, Field(min_length=1, max_length=MAX_LABEL)]
Source = Literal["dispatcher", "agency_return", "audit"]
CorrectionStatus = Literal["stored", "replaced", "unchanged"]


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: CaseId
    labels: dict[TargetName, LabelText] = Field(min_length=1, max_length=20, description="the final label of any "
                                                "of the model's targets, e.g. {\"agency\": \"...\"}")
    source: Source = Field(description="dispatcher (改派), agency_return (退单) or audit")
    time: AwareDatetime | None = Field(default=None, description="when the case was corrected, ISO 8601 with a "
                                       "time zone (default: now); not before the prediction it corrects")
    text: str | None = Field(default=None, min_length=1, description="the complaint text, for a case the service "
                             "never predicted (stored masked, only with HOTLINE_DECISION_LOG_TEXTS)")


class CorrectionBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CorrectionRequest] = Field(min_length=1, max_length=MAX_CORRECTIONS_PER_BATCH)


class CorrectionResponse(ResponseBody):
    case_id: str
    status: CorrectionStatus = Field(description="stored (new), replaced (this source had said otherwise: the "
                                     "old label is kept in the history) or unchanged (the same correction again)")
    targets: dict[str, CorrectionStatus]
    new_labels: list[str] = Field(description="targets whose label the serving model does not know (a new or "
                                  "renamed agency): stored, and counted for retraining")
    case_seen: bool = Field(description="the service predicted this case (false: known from the correction's text)")


class CorrectionBatchResult(ResponseBody):
    case_id: str
    result: CorrectionResponse | None = Field(default=None, exclude_if=lambda v: v is None)
    error: ItemError | None = Field(default=None, exclude_if=lambda v: v is None)


class CorrectionBatchResponse(ResponseBody):
    results: list[CorrectionBatchResult]
    stored: int
    replaced: int
    unchanged: int
    failed: int


class QualityResponse(ResponseBody):
    model_config = ConfigDict(extra="allow")

    generated_at: str
    serving_version: str | None = Field(default=None, description="the version serving now; absent before a model "
                                        "loads")
    windows: dict[str, Any] = Field(description="per window (\"7d\", \"30d\"): since, and per model version its "
                                    "decisions, review rate, unseen-token share and per target predictions, "
                                    "review_rate, labeled, accuracy (auto / review), new_label_share, label_psi")
