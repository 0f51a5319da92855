"""Typed training configuration.

A strict object (unknown keys fail) that is saved inside the model it produced, so a model always says how
it was made (spaCy ``schemas.py``).  Service settings live in ``serve.py``; they are a different scope.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .text import NORMALIZATION_VERSION

__all__ = ["FeatureConfig", "ModelConfig", "RecencyConfig", "TrainingConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureConfig(_Strict):
    """What the vectorizer extracts from a normalized complaint."""

    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (1, 3)
    # 2: a feature seen in one training text cannot generalize; dropping them shrinks the model ~4x and was
    # better or equal on 3 of 4 real data sets (BENCHMARKS.md)
    min_df: int = Field(default=2, ge=1)
    max_df: float = Field(default=1.0, gt=0.0, le=1.0)
    # the most frequent features when more pass min_df/max_df: bounds the model's size, its load time and the
    # memory of training (a corpus's vocabulary keeps growing with its size).  1,000,000 leaves every data set
    # of the accuracy benchmark untouched (tipdm, the largest, has 414,000 at min_df 2) and keeps a 26-class
    # model under 30 MB and its cold start under 1 s (weights stored as float16, char n-grams as codes: 2,000,000
    # made 34 MB and 1.5 s); on the scaling corpus 500,000 had lost 0.45 points at 25,000 texts
    # (BENCHMARKS.md, training that scales)
    max_features: int | None = Field(default=1_000_000, ge=1)
    sublinear_tf: bool = True
    # weight of the char block relative to the word block (each block is l2-normalised on its own)
    char_weight: float = Field(default=1.0, ge=0.0)
    # the word and char n-grams of the first N characters as blocks of their own (0: none): a web message's
    # title, a caller's first sentence.  Fused heads weigh them with their word view; single SVMs leave them
    # out.  5-fold CV on the train splits: tipdm +0.4 points, thucnews and Qingdao equal (BENCHMARKS.md)
    lead_chars: int = Field(default=20, ge=0, le=1000)
    hmm: bool = False
    # "auto": rjieba (jieba-rs: the same dictionary, user dictionary and tokens, ~15x faster) when installed,
    # else jieba
    segmenter: Literal["jieba", "rjieba", "auto"] = "auto"
    # the text.normalize version a new model reads text with (3: names, addresses, plates and card numbers masked
    # too); an older one only to reproduce an older model.  A trained model keeps its own
    normalization: int = Field(default=NORMALIZATION_VERSION, ge=1, le=NORMALIZATION_VERSION)

    @model_validator(mode="after")
    def _ranges(self) -> FeatureConfig:
        for name in ("word_ngram_range", "char_ngram_range"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi <= 5:
                raise ValueError(f"{name} must satisfy 1 <= min <= max <= 5, got ({lo}, {hi})")
        return self


class ModelConfig(_Strict):
    """The linear model fitted for each target and its probability calibration."""

    C: float = Field(default=1.0, gt=0.0)
    class_weight: Literal["balanced"] | None = None
    calibration: Literal["temperature", "none"] = "temperature"
    # "auto": fuse a word-block SVM, a char-block SVM and naive Bayes with weights fitted on out-of-fold
    # scores when the median class has >= 20 training cases (model.FUSION_MIN_MEDIAN_CLASS), else one SVM;
    # "on" fuses whenever every class is in every fold; "off" never.  Needs calibration="temperature"
    fusion: Literal["auto", "on", "off"] = "auto"
    # one temperature per target needs few out-of-fold scores: 3 folds fit 4 models instead of 6
    calibration_folds: int = Field(default=3, ge=2, le=20)
    max_iter: int = Field(default=2000, ge=10)
    # out-of-fold calibration and fusion weights are fitted on at most this many of a target's rows (a
    # stratified sample, classifier.sampling): a temperature and three view weights need far fewer scores than
    # a large corpus gives, and the fold fits then cost a fixed time instead of three fits of the corpus
    calibration_rows: int | None = Field(default=10_000, ge=100)
    # a target with at most this many labeled rows is fitted exactly (every row's features in memory, liblinear
    # SVMs), as on small data; a larger one is streamed: its SVM view learns by SGD epochs over the feature
    # chunks on disk and naive Bayes from per-class sums (classifier.partial_fit), so memory stays bounded and
    # time grows linearly.  None: always exact
    exact_fit_rows: int | None = Field(default=50_000, ge=100)
    # passes over the corpus for a streamed head's SGD views (over features scaled per column,
    # classifier.partial_fit); None: about 300,000 rows seen in all, 2-4 passes (3 at 100,000 rows, 2 from
    # 150,000).  At 100,000 texts 2-3 passes matched 8 (fused 0.860-0.862 on the real test set vs 0.8605) at a
    # third of the CPU (24 s for 2 passes of both views, 2 cores)
    sgd_epochs: int | None = Field(default=None, ge=1, le=100)


class RecencyConfig(_Strict):
    """How much old cases count (``training.recency``); both off by default.  Measured from the newest case in
    the training data, so they need each case's date (``--time``, or the corrections' times)."""

    # a case this many days older than the newest counts half (None: every case counts the same)
    half_life_days: float | None = Field(default=None, gt=0.0)
    # per target: a label no case has named for this many days is retired from the label set
    retire_after_days: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive(self) -> RecencyConfig:
        bad = {t: d for t, d in self.retire_after_days.items() if not d > 0}
        if bad:
            raise ValueError(f"retire_after_days must be longer than 0 days, got {bad}")
        return self


class TrainingConfig(_Strict):
    """Everything that decides what ``train`` produces; saved in the model's manifest."""

    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    recency: RecencyConfig = RecencyConfig()
    # per target, {old label: new label}: a renamed or merged agency (``training.relabel``); applied to the export
    # and the corrections before validation
    relabel: dict[str, dict[str, str]] = Field(default_factory=dict)
    # validation and evaluation
    test_size: float = Field(default=0.2, ge=0.0, lt=1.0)
    cv_folds: int = Field(default=0, ge=0, le=20)
    seed: int = 42
    min_class_count: int = Field(default=3, ge=1)
    rare_policy: Literal["error", "other", "drop"] = "error"
    other_label: str = "其他"
    drop_duplicates: bool = True
    refit_full: bool = True
    # prediction limits travel with the model
    max_text_length: int = Field(default=10_000, ge=1)
    # optional dictionaries: their content is embedded in the model, the paths are only where they came from
    user_dict: str | None = None
    stop_words: str | None = None
    n_jobs: int = Field(default=-1)

    @model_validator(mode="after")
    def _relabel_has_no_cycle(self) -> TrainingConfig:
        for target, pairs in self.relabel.items():
            for old in pairs:
                seen, new = {old}, pairs[old]
                while new in pairs and new not in seen:
                    seen.add(new)
                    new = pairs[new]
                if new in seen:
                    raise ValueError(f"relabel of {target}: {old!r} leads back to itself (a cycle or OLD=OLD)")
        return self

    def with_updates(self, **changes: Any) -> TrainingConfig:
        """A copy with top-level or dotted (``model.C``) fields replaced, validated strictly."""
        data = self.model_dump()
        for key, value in changes.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                if part not in node or not isinstance(node[part], dict):
                    raise ConfigError(f"unknown config section {part!r} in {key!r}")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"unknown config key {key!r}; known: {sorted(node)}")
            node[leaf] = value
        return validate_config(data)


def validate_config(data: dict[str, Any]) -> TrainingConfig:
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {exc}") from None


def load_config(path: str | Path) -> TrainingConfig:
    """Read a JSON training config; unknown keys are an error, not ignored."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return validate_config(data)
