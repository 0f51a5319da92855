"""ComplaintClassifier: one shared TF-IDF vectorizer, one calibrated linear model per target.

A hotline case has several targets (category, agency).  They share the text features, so the complaint is
normalized and segmented once; each target has its own ``LinearSVC`` whose decision scores are turned into
probabilities by temperature scaling fitted on out-of-fold scores (one parameter per target: it keeps the
ranking, and a "needs review" threshold on the result means what it says).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import cpu_count
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from .config import ModelConfig, TrainingConfig
from .corpus import analyze_corpus
from .errors import (
    ComplaintInputError,
    EmptyTextError,
    NotAListError,
    PlaceHintError,
    TextTooLongError,
    TrainingDataError,
    UnknownTargetError,
)
from .explanations import readable_terms
from .features import ComplaintVectorizer
from .partial_fit import FinalViews
from .phases import phase
from .sampling import FitRows, HeadStatistics, collect_rows, head_rows, stratified_sample
from .scores import (
    NB_ALPHA,
    _as_multiclass,
    _fit_temperature,
    _fit_view_weights,
    _naive_bayes,
    _sample_weight,
    _softmax,
    _take,
    combine_views,
    naive_bayes_view,
)
from .text import NORMALIZATION_VERSION, ComplaintTokenizer, is_blank
from .weights import on_storage_grid, served, stored

__all__ = ["ComplaintClassifier", "TargetHead", "head_rows", "check_texts", "check_places", "prediction_record"]

MAX_PLACE_HINT = 200  # characters: a county, a town, an address line


def check_texts(texts: Any, max_length: int) -> list[str]:
    """Validate a list of complaint texts; each problem has its own error naming the offending item."""
    if texts is None or isinstance(texts, (str, bytes)):
        got = "None" if texts is None else f"a single {type(texts).__name__}"
        raise NotAListError(f"expected a list of texts, got {got}; wrap one text in a list: [text]")
    if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise NotAListError(f"expected a list of texts, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ComplaintInputError(f"text #{i} is {type(t).__name__}, expected str")
        if is_blank(t):
            raise EmptyTextError(f"text #{i} is empty or whitespace only (invisible and control characters count "
                                 "as whitespace); send the complaint's text")
        if len(t) > max_length:
            raise TextTooLongError(
                f"text #{i} has {len(t):,} characters; the limit is {max_length:,}. Shorten it or raise "
                "max_text_length in the training config"
            )
    return out


def check_places(places: Any, n_texts: int) -> list[str | None] | None:
    """Validate place hints (one per text, None or "" for none); None when no text has one."""
    if places is None:
        return None
    if isinstance(places, (str, bytes)) or not hasattr(places, "__iter__"):
        raise PlaceHintError(f"expected a list of place hints (one per text), got {type(places).__name__}; "
                            "wrap one in a list: [place]")
    out = list(places)
    if len(out) != n_texts:
        raise PlaceHintError(f"{len(out)} place hints for {n_texts} texts; give one per text (None for none)")
    for i, p in enumerate(out):
        if p is not None and not isinstance(p, str):
            raise PlaceHintError(f"place hint #{i} is {type(p).__name__}, expected str or None")
        if p is not None and len(p) > MAX_PLACE_HINT:
            raise PlaceHintError(f"place hint #{i} has {len(p):,} characters; the limit is {MAX_PLACE_HINT}")
    hints = [p.strip() or None if p is not None else None for p in out]
    return hints if any(h is not None for h in hints) else None


def _refuse_places(places: Any, n_texts: int) -> None:
    """A model without routing takes no place hints: refuse any, rather than ignore them."""
    if check_places(places, n_texts) is not None:
        raise PlaceHintError("place hints need a routing model (trained with a routing directory, "
                             "`hotline train --directory`); this model has none")


# fusion ("auto") needs the median class to have this many training cases: the view weights are fitted on
# out-of-fold scores, and with a few cases per class those scores are unlike the final model's (on the 66
# Qingdao agencies, median 4, every out-of-fold combination lost 1-6 points; on the data sets with a median of
# 290-1000 fusion gained 0.7-0.8 points on two and lost one case in 1,281 on the third)
FUSION_MIN_MEDIAN_CLASS = 20
_FUSION_SVM_VIEWS = ("word", "char")  # feature blocks with an SVM each in a fused head
# a streamed fused head has one SGD view over every feature (beside naive Bayes): on the scaling corpus's
# 100,000 texts 0.8732 on the real test set against 0.8622 for separate word and char SGD views (whose fitted
# weights left the char view out), 400,000: see BENCHMARKS.md; one model to fit instead of two
_STREAMED_SVM_VIEWS = ("all",)
# a streamed fused head holds this share of its labeled rows (at most its calibration sample) out of its final
# views, to fit their fusion weights on (TargetHead._fit_fused_held_out)
HELD_OUT_SHARE = 0.1


class TargetHead(ClassifierMixin, BaseEstimator):
    """A linear classifier over TF-IDF features with calibrated probabilities.

    Single (``fusion="off"``, or too few cases per class): one ``LinearSVC`` over all features, its scores
    divided by a temperature fitted on out-of-fold scores.

    Fused (``fusion="auto"`` when ``FUSION_MIN_MEDIAN_CLASS`` holds, or ``"on"``; needs ``char_columns`` at
    fit): an SVM over the word block, an SVM over the char block and a multinomial naive Bayes over all
    features, whose scores are summed with one weight per view fitted on out-of-fold scores by log-loss (the
    weights are the calibration: no separate temperature).  Every view is linear, so the sum is folded into
    one ``coef_``/``intercept_``: predicting costs exactly what a single SVM costs.  Against one SVM on the
    benchmark's data sets: +0.7 (thucnews) and +0.8 (Qingdao categories) points of accuracy, -0.07 on tipdm,
    and a lower log-loss (BENCHMARKS.md, experiments).

    ``coef_`` is held as (n_features, n_classes) float32 so a single complaint's few hundred non-zero
    features gather their rows directly; its values are on float16's grid and pickled as float16
    (``classifier.weights``), so a saved head is half the size and predicts exactly as the fitted one.
    """

    # heads pickled before fusion existed have no instance attribute: they are single SVMs (get_params, repr)
    fusion = "off"

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = None,
        calibration: str = "temperature",
        calibration_folds: int = 3,
        max_iter: int = 2000,
        random_state: int = 0,
        n_jobs: int = 1,
        fusion: str = "auto",
        calibration_rows: int | None = None,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.fusion = fusion
        self.calibration_rows = calibration_rows

    @classmethod
    def from_config(cls, config: ModelConfig, random_state: int = 0, n_jobs: int = 1) -> TargetHead:
        return cls(
            C=config.C,
            class_weight=config.class_weight,
            calibration=config.calibration,
            calibration_folds=config.calibration_folds,
            max_iter=config.max_iter,
            random_state=random_state,
            n_jobs=n_jobs,
            fusion=config.fusion,
            calibration_rows=config.calibration_rows,
        )

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)

    def _fit_view(self, X: sp.csr_matrix, y: np.ndarray, weight: np.ndarray | None, columns: np.ndarray) -> Any:
        """A view's SVM on ``X`` (the view's ``columns`` of some rows): liblinear's, or for a streamed head
        (``fit(final=...)``) SGD's, fitted as its final views are (``FinalViews.fit_sample``)."""
        final = getattr(self, "_final", None)
        if final is None:
            return self._svm().fit(X, y, sample_weight=weight)
        return final.fit_sample(X, y, weight, columns)

    def fit(self, X: sp.csr_matrix, y: Sequence[str], char_columns: np.ndarray | None = None,
            lead_columns: np.ndarray | None = None, sample_weight: np.ndarray | None = None,
            statistics: HeadStatistics | None = None, final: FinalViews | None = None) -> TargetHead:
        """``char_columns``: a boolean mask of the features that are char n-grams (the vectorizer's
        ``is_char_``); without it the head is a single SVM.  ``lead_columns`` (``is_lead_``): the features of
        the text's first characters; a fused head gives them to its word view, a single SVM leaves them out
        (with a few cases per class their weights learn a caller's greeting, not the problem: BENCHMARKS.md).
        ``sample_weight``: how much each case counts (recent cases more: ``training.recency``), in every SVM,
        the naive Bayes counts, the view weights and the temperature; scaled to a mean of 1, so the
        regularization ``C`` means what it means without weights.  Out-of-fold calibration uses at most
        ``calibration_rows`` rows (a stratified sample, ``classifier.sampling``).

        A streamed head (``classifier.partial_fit``) gets ``final``: ``X`` is then its calibration sample,
        the fold views are SGD SVMs fitted on it, ``final(columns)`` fits the final view over each array of
        columns on every row, and a fused head's naive Bayes learns from ``statistics`` (per-class sums over
        every row)."""
        labels = np.asarray(y, dtype=object)
        weight = _sample_weight(sample_weight, len(labels))
        classes = np.unique(labels)
        if len(classes) < 2:
            raise TrainingDataError(
                f"a target needs at least 2 classes to learn from, got {len(classes)} ({list(classes)})"
            )
        if self.fusion not in ("auto", "on", "off"):
            raise ValueError(f"fusion must be 'auto', 'on' or 'off', got {self.fusion!r}")
        self.classes_ = classes
        self.temperature_ = 1.0
        self.fusion_weights_: dict[str, float] | None = None
        self._final = final  # read by _fit_view while fitting, never saved
        try:
            self._fit(X, labels, char_columns, lead_columns, weight, statistics, final)
        finally:
            self.__dict__.pop("_final", None)
        # the weights as they are saved: the model scored after fitting is the model that is served
        self.coef_: np.ndarray = on_storage_grid(self.__dict__["coef_"])
        return self

    def _fit(self, X: sp.csr_matrix, labels: np.ndarray, char_columns: np.ndarray | None,
             lead_columns: np.ndarray | None, weight: np.ndarray | None, statistics: HeadStatistics | None,
             final: FinalViews | None) -> TargetHead:
        folds = [] if self.calibration != "temperature" else (
            self._folds_of(labels) if final is not None else self._calibration_folds(labels))
        lead = np.zeros(X.shape[1], dtype=bool) if lead_columns is None else np.asarray(lead_columns, dtype=bool)
        if self._fuses(labels, folds, char_columns, statistics):
            assert char_columns is not None
            return self._fit_fused(X, labels, folds, np.asarray(char_columns, dtype=bool), lead, weight,
                                   statistics)
        width = X.shape[1]
        kept = np.flatnonzero(~lead) if lead.any() else None
        if kept is not None:
            X = X.tocsr()[:, kept]
        # the fold models and the final one are independent: liblinear releases the GIL, so threads run them
        # on all cores without copying X
        fits = [(X[train], labels[train], _take(weight, train)) for train, _ in folds]
        if final is None:
            fits.append((X, labels, weight))
        columns = np.arange(width) if kept is None else kept
        workers = min(len(fits), _threads(getattr(self, "n_jobs", 1)))
        with _quiet_liblinear(), phase("svm fits"):  # warning filters are process-wide: set once, not per thread
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    models = list(pool.map(lambda xyw: self._fit_view(xyw[0], xyw[1], xyw[2], columns), fits))
            else:
                models = [self._fit_view(xx, yy, ww, columns) for xx, yy, ww in fits]
        if final is not None:
            models += final([columns])
        if folds:
            scores, truth, tested = [], [], []
            for (_, test), svm in zip(folds, models):
                fold_classes = svm.classes_
                coef, intercept = _as_multiclass(svm, len(fold_classes))
                fold_scores = np.asarray(X[test] @ coef) + intercept
                # classes absent from the fold get the typical one-vs-rest margin of a negative class
                full = np.full((len(test), len(self.classes_)), -1.0, dtype=np.float64)
                full[:, np.searchsorted(self.classes_, fold_classes)] = fold_scores
                scores.append(full)
                truth.append(np.searchsorted(self.classes_, labels[test]))
                tested.append(test)
            self.temperature_ = _fit_temperature(np.vstack(scores), np.concatenate(truth),
                                                 _take(weight, np.concatenate(tested)))
        self.coef_, self.intercept_ = _as_multiclass(models[-1], len(self.classes_))
        if kept is not None:  # back to the vectorizer's width: the lead columns weigh nothing
            coef = np.zeros((width, len(self.classes_)), dtype=np.float32)
            coef[kept] = self.coef_
            self.coef_ = coef
        return self

    def describe(self) -> dict[str, Any]:
        """How this head turns features into probabilities (for the manifest, the model card and /model)."""
        check_is_fitted(self, "coef_")
        weights = getattr(self, "fusion_weights_", None)
        # features with a weight for some class: fewer than the vectorizer's where the head leaves blocks out
        # (the lead, for a single SVM) or was labeled on part of the texts (``head_rows``)
        used = int(np.count_nonzero(np.any(self.coef_ != 0, axis=1)))
        return {"kind": "fused" if weights else "svm", "classes": len(self.classes_),
                "fusion_weights": weights, "temperature": round(float(self.temperature_), 6),
                "features_used": used}

    def _fuses(self, labels: np.ndarray, folds: list, char_columns: np.ndarray | None,
               statistics: HeadStatistics | None = None) -> bool:
        if self.fusion == "off" or not folds or char_columns is None:
            return False
        char_columns = np.asarray(char_columns, dtype=bool)
        if char_columns.all() or not char_columns.any():
            return False  # one block only: nothing to fuse
        # every class must be in every fold's training part, or the fold's views cannot score it
        if any(len(np.unique(labels[train])) < len(self.classes_) for train, _ in folds):
            return False
        if self.fusion == "on":
            return True
        # the class sizes of every row the head learns from (``labels`` are a sample when it is streamed)
        counts = np.unique(labels, return_counts=True)[1] if statistics is None else statistics.class_rows
        return bool(np.median(counts) >= FUSION_MIN_MEDIAN_CLASS)

    def _fit_fused(self, X: sp.csr_matrix, labels: np.ndarray, folds: list, is_char: np.ndarray,
                   lead: np.ndarray, weight: np.ndarray | None = None,
                   statistics: HeadStatistics | None = None) -> TargetHead:
        X = X.tocsr()
        # the word view takes the lead's blocks too: its fitted weight decides how much they count
        every = {"all": np.arange(X.shape[1]), "word": np.flatnonzero(~is_char), "char": np.flatnonzero(is_char)}
        nb_columns = np.flatnonzero(~lead)
        final = getattr(self, "_final", None)
        view_names = _FUSION_SVM_VIEWS if final is None else _STREAMED_SVM_VIEWS
        blocks = [every[name] for name in view_names]
        n_svms = len(blocks)
        parts = [(train, test) for train, test in folds] + [(np.arange(X.shape[0]), None)]
        if final is not None and statistics is not None and getattr(final, "sample_rows", None) is not None:
            return self._fit_fused_held_out(X, labels, view_names, blocks, nb_columns, weight, statistics, final)
        jobs = [(k, b) for k in range(len(parts) - (final is not None)) for b in range(n_svms)]

        def fit_svm(job: tuple[int, int]) -> LinearSVC:
            k, b = job
            rows = parts[k][0]
            # the final fit takes X itself (no row copy); the view's columns go straight to float64, the type
            # liblinear copies from, so only one copy of the view is held while it fits
            view = (X if k == len(folds) else X[rows])[:, blocks[b]].astype(np.float64)
            return self._fit_view(view, labels[rows], _take(weight, rows), blocks[b])

        workers = min(len(jobs), _threads(getattr(self, "n_jobs", 1)))
        with _quiet_liblinear(), phase("svm fits"):
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    svms = list(pool.map(fit_svm, jobs))
            else:
                svms = [fit_svm(j) for j in jobs]
        if final is not None:
            svms += final(blocks)
        with phase("naive Bayes and fusion"):
            return self._fuse(X, labels, folds, parts, blocks, nb_columns, svms, weight, statistics)

    def _fuse(self, X: sp.csr_matrix, labels: np.ndarray, folds: list, parts: list, blocks: list,
              nb_columns: np.ndarray, svms: list, weight: np.ndarray | None,
              statistics: HeadStatistics | None) -> TargetHead:
        n_svms = len(blocks)
        n_classes = len(self.classes_)

        def linear_views(k: int) -> list[tuple[np.ndarray, np.ndarray]]:
            """(coef over all features, intercept) of each view fitted on part ``k``."""
            views = _svm_views(svms[n_svms * k:n_svms * (k + 1)], blocks, X.shape[1], n_classes)
            if statistics is not None and k == len(folds):  # the final view: naive Bayes over every row
                log_prob, log_prior = _naive_bayes(statistics, self.classes_, nb_columns)
            else:
                rows = parts[k][0]
                nb = MultinomialNB(alpha=NB_ALPHA).fit(X[rows][:, nb_columns], labels[rows],
                                                        sample_weight=_take(weight, rows))
                log_prob, log_prior = nb.feature_log_prob_.T, nb.class_log_prior_
            views.append(_nb_view(log_prob, log_prior, nb_columns, X.shape[1]))
            return views

        truth = np.searchsorted(self.classes_, labels)
        oof_scores, oof_truth, oof_rows = [], [], []
        for k, (_, test) in enumerate(folds):
            oof_scores.append(np.stack([np.asarray(X[test] @ c, dtype=np.float64) + b
                                        for c, b in linear_views(k)], axis=1))
            oof_truth.append(truth[test])
            oof_rows.append(test)
        weights = _fit_view_weights(np.vstack(oof_scores), np.concatenate(oof_truth),
                                    _take(weight, np.concatenate(oof_rows)))
        if not np.any(weights > 0):  # degenerate out-of-fold scores: the plain sum rather than no model
            weights = np.ones_like(weights)
        return self._combine(weights, linear_views(len(folds)))

    def _combine(self, weights: np.ndarray, views: list[tuple[np.ndarray, np.ndarray]],
                 view_names: Sequence[str] = _FUSION_SVM_VIEWS) -> TargetHead:
        """The fused head: the views' (coef, intercept) summed with ``weights`` (SVM views ``view_names``, then
        naive Bayes)."""
        self.coef_ = combine_views(weights, [c for c, _ in views])
        self.intercept_ = sum(w * b for w, (_, b) in zip(weights, views)).astype(np.float32)
        names = [f"{v}_svm" for v in view_names] + ["nb"]
        self.fusion_weights_ = {name: round(float(w), 6) for name, w in zip(names, weights, strict=True)}
        return self

    def _fit_fused_held_out(self, X: sp.csr_matrix, labels: np.ndarray, view_names: Sequence[str], blocks: list,
                            nb_columns: np.ndarray, weight: np.ndarray | None, statistics: HeadStatistics,
                            final: FinalViews) -> TargetHead:
        """A streamed head's fusion.  Its final SGD views learn from every labeled row but a held-out part of
        the calibration sample (``HELD_OUT_SHARE`` of the rows at most, stratified), and the views' weights
        (the temperature with them) are fitted on those views' scores over it, naive Bayes's from the sums
        without the held-out rows: the weights describe the very views the model keeps.  Weights fitted on fold
        models of a 10,000-row sample described weaker views and gave the char view a weight of 0 where the
        final views summed were 1.2 points better (BENCHMARKS.md, training that scales).  The saved naive Bayes
        view is the one over every row."""
        n_classes = len(self.classes_)
        assert final.sample_rows is not None
        held = stratified_sample(labels, max(1, int(HELD_OUT_SHARE * final.rows)), self.random_state)
        held = _at_most_half_a_class(np.arange(len(labels)) if held is None else held, labels, statistics)
        svms = final(blocks, held_out=final.sample_rows[held])
        with phase("naive Bayes and fusion"):
            X_held = X[held]
            w_held = _take(weight, held)
            svm_views = _svm_views(svms, blocks, X.shape[1], n_classes)
            del svms
            # one (features x classes) array after another, each freed once used and built a block of features at
            # a time: memory is their size, not their sum (BENCHMARKS.md, the peak at 400,000 texts)
            y_held = np.searchsorted(statistics.classes, labels[held])
            ones = np.ones(len(held)) if w_held is None else w_held
            onehot = sp.csr_matrix((ones, (y_held, np.arange(len(held)))), shape=(len(statistics.classes), len(held)))
            sums = (onehot @ X_held.astype(np.float64), np.bincount(y_held, weights=ones,
                                                                   minlength=len(statistics.classes)))
            without = naive_bayes_view(statistics, self.classes_, nb_columns, X.shape[1], held_out=sums)
            del sums
            scores = np.stack([np.asarray(X_held @ c, dtype=np.float64) + b for c, b in [*svm_views, without]],
                              axis=1)
            del without
            weights = _fit_view_weights(scores, np.searchsorted(self.classes_, labels[held]), w_held)
            if not np.any(weights > 0):  # degenerate scores: the plain sum rather than no model
                weights = np.ones_like(weights)
            nb = naive_bayes_view(statistics, self.classes_, nb_columns, X.shape[1])
            return self._combine(weights, [*svm_views, nb], view_names)

    def _calibration_folds(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train, test) index pairs for out-of-fold scores; empty when the data is too small to calibrate.
        Over ``calibration_rows`` rows the folds split a stratified sample of them (``classifier.sampling``)."""
        sample = stratified_sample(y, getattr(self, "calibration_rows", None), self.random_state)
        if sample is None:
            return self._folds_of(y)
        return [(sample[train], sample[test]) for train, test in self._folds_of(y[sample])]

    def _folds_of(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        _, counts = np.unique(y, return_counts=True)
        folds = min(self.calibration_folds, int(counts.min()))
        if folds < 2:
            folds = 2 if len(y) >= 4 else 0
        if folds < 2:
            return []
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        strat = y if counts.min() >= folds else np.zeros(len(y))
        out = []
        for train, test in skf.split(np.zeros(len(y)), strat):
            fold_classes = np.unique(y[train])
            if len(fold_classes) < 2:
                continue
            # rows whose class is missing from this fold's training part cannot be scored by any model;
            # the final model sees every class, so they would only distort the temperature
            test = test[np.isin(y[test], fold_classes)]
            if len(test):
                out.append((train, test))
        return out

    def decision_function(self, X: sp.csr_matrix) -> np.ndarray:
        if "coef_" not in self.__dict__:  # check_is_fitted's answer at a fraction of its cost (hot path)
            check_is_fitted(self, "coef_")
        if X.shape[0] == 1 and sp.issparse(X):  # one complaint: gather its rows, no sparse-product dispatch
            X = X.tocsr()
            return (X.data @ self.coef_[X.indices] + self.intercept_)[None, :]
        return np.asarray(X @ self.coef_) + self.intercept_

    def predict_proba(self, X: sp.csr_matrix) -> np.ndarray:
        return _softmax(self.decision_function(X) / self.temperature_)

    def predict(self, X: sp.csr_matrix) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def proba_one(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Probabilities for one complaint given its sparse features: the single-request fast path."""
        scores = values @ self.coef_[indices] + self.intercept_
        return _softmax(scores[None, :] / self.temperature_)[0]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # object.__getstate__ hands out the live __dict__: copy it
        if "coef_" in state:
            state["coef_"] = stored(state["coef_"])  # float16 on disk (classifier.weights)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "coef_" in self.__dict__:
            self.coef_ = served(self.coef_)  # float32 in memory, the same values


def _at_most_half_a_class(held: np.ndarray, labels: np.ndarray, statistics: HeadStatistics) -> np.ndarray:
    """The rows of ``held`` (sorted indices into ``labels``) less those past half of their class's labeled rows
    in the whole corpus (``statistics.class_rows``): the final views must learn every class, a rare one too (the
    sample keeps at least 10 rows a class, all of a class of 10)."""
    cls = np.searchsorted(statistics.classes, labels[held])
    order = np.argsort(cls, kind="stable")
    sorted_cls = cls[order]
    starts = np.searchsorted(sorted_cls, sorted_cls, side="left")
    rank = np.empty(len(held), dtype=np.int64)
    rank[order] = np.arange(len(held)) - starts
    return held[rank < statistics.class_rows[cls] // 2]


def _svm_views(svms: list, blocks: list, width: int, n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(coef over all ``width`` features, intercept) of each view's SVM (fitted on its block's columns)."""
    views = []
    for svm, block in zip(svms, blocks):
        coef_b, icpt = _as_multiclass(svm, n_classes)
        if len(block) == width:  # every column, in order (a streamed head's one view): no second copy
            coef = coef_b
        else:
            coef = np.zeros((width, n_classes), dtype=np.float32)
            coef[block] = coef_b
        views.append((coef, icpt.astype(np.float64)))
    return views


def _nb_view(log_prob: np.ndarray, log_prior: np.ndarray, columns: np.ndarray,
             width: int) -> tuple[np.ndarray, np.ndarray]:
    """Naive Bayes as a linear view: log-probabilities centred per feature (adding the same number to every
    class changes no probability, and a feature's weight then says how much it favours a class over the
    average: explanations), class log-priors as the intercept."""
    coef = np.zeros((width, log_prob.shape[1]), dtype=np.float32)
    coef[columns] = log_prob - log_prob.mean(axis=1, keepdims=True)
    return coef, log_prior.astype(np.float64)


def _threads(n_jobs: int | None) -> int:
    """joblib's n_jobs convention (-1: all cores) for a thread pool, usable inside daemonic processes too."""
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, cpu_count() + 1 + n_jobs) if n_jobs < 0 else n_jobs


@contextmanager
def _quiet_liblinear() -> Iterator[None]:
    """Silence LinearSVC's "classes greater than 50% of samples" and convergence warnings: routing data
    legitimately has hundreds of agencies with one or two cases each."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


class ComplaintClassifier(BaseEstimator):
    """Classify complaint texts for one or more targets (e.g. category and agency).

    Parameters
    ----------
    config : the training configuration (features, model, limits); ``TrainingConfig()`` if None.
    tokenizer : a ``ComplaintTokenizer``; by default one built from the config's dictionaries.
    progress : show tqdm progress bars while fitting.

    After ``fit``: ``vectorizer_``, ``heads_`` (target name -> ``TargetHead``), ``targets_``.
    Training metadata (validation report, metrics) is attached by ``training.train`` as ``validation_report``,
    ``metrics`` and ``manifest`` attributes.
    """

    def __init__(
        self,
        config: TrainingConfig | None = None,
        tokenizer: ComplaintTokenizer | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.progress = progress

    # -- fitting ----------------------------------------------------------------------------------------
    def _config(self) -> TrainingConfig:
        return self.config if self.config is not None else TrainingConfig()

    def fit(self, texts: Sequence[str], targets: Mapping[str, Sequence[Any]],
            sample_weight: Sequence[float] | np.ndarray | None = None) -> ComplaintClassifier:
        """Fit on raw texts and, per target, a label for each text (None / NaN: no label for that target).
        ``sample_weight``: one weight per text (e.g. recent cases more), given to every head."""
        self._fit_matrix(texts, targets, sample_weight)
        return self

    def _fit_matrix(self, texts: Sequence[str], targets: Mapping[str, Sequence[Any]],
                    sample_weight: Sequence[float] | np.ndarray | None = None) -> FitRows:
        """``fit``, returning the rows the heads learned from (``FitRows``: their features, and which rows of
        ``texts`` they are when a large corpus was sampled) so subclasses can fit more heads on them."""
        cfg = self._config()
        texts = check_texts(texts, cfg.max_text_length)
        if not isinstance(targets, Mapping) or not targets:
            raise TrainingDataError("targets must be a non-empty mapping of target name -> labels")
        for name, labels in targets.items():
            if len(labels) != len(texts):
                raise TrainingDataError(
                    f"target {name!r} has {len(labels)} labels for {len(texts)} texts; they must match"
                )
        tokenizer = self.tokenizer
        if tokenizer is None:
            tokenizer = ComplaintTokenizer.from_files(
                cfg.user_dict, cfg.stop_words, hmm=cfg.features.hmm, segmenter=cfg.features.segmenter
            )
        f = cfg.features
        self.vectorizer_ = ComplaintVectorizer(
            tokenizer=tokenizer,
            word_ngram_range=f.word_ngram_range,
            char_ngram_range=f.char_ngram_range,
            min_df=f.min_df,
            max_df=f.max_df,
            max_features=f.max_features,
            sublinear_tf=f.sublinear_tf,
            char_weight=f.char_weight,
            n_jobs=cfg.n_jobs,
            progress=self.progress,
            lead_chars=f.lead_chars,
            # a config pickled before the setting existed (a model refit from an older one) reads as it always did
            normalization=getattr(f, "normalization", NORMALIZATION_VERSION),
        )
        weight = _sample_weight(sample_weight, len(texts))
        given = {name: np.array([str(v) if _is_label(v) else None for v in values], dtype=object)
                 for name, values in targets.items()}
        # the text is analyzed once; only the rows the heads fit on are held as a matrix (classifier.sampling)
        m = cfg.model
        with analyze_corpus(self.vectorizer_, texts, n_jobs=cfg.n_jobs, progress=self.progress) as corpus:
            corpus.select(self.vectorizer_)
            with phase("feature matrix"):
                fit = collect_rows(corpus.features(self.vectorizer_), len(texts), given, m.exact_fit_rows,
                                   m.calibration_rows, cfg.seed, weight)
        try:
            self.heads_: dict[str, TargetHead] = {}
            for name, y in _progress_items(given, self.progress):
                head = TargetHead.from_config(m, random_state=cfg.seed, n_jobs=cfg.n_jobs)
                with phase(f"head {name}"):
                    self.heads_[name] = self._fit_head(head, fit, name, y, weight)
            self.targets_ = list(self.heads_)
        finally:
            fit.close()
        return fit

    def fit_features(self, vectorizer: ComplaintVectorizer, fit: FitRows, targets: Mapping[str, np.ndarray],
                     sample_weight: np.ndarray | None = None) -> ComplaintClassifier:
        """Fit the heads on features built elsewhere (``training.cluster_training``: on Dask workers) with a
        fitted ``vectorizer``; ``targets``: name -> a label per corpus row (None: unlabeled)."""
        cfg = self._config()
        self.vectorizer_ = vectorizer
        self.heads_ = {}
        for name, y in targets.items():
            head = TargetHead.from_config(cfg.model, random_state=cfg.seed, n_jobs=cfg.n_jobs)
            with phase(f"head {name}"):
                self.heads_[name] = self._fit_head(head, fit, name, np.asarray(y, dtype=object), sample_weight)
        self.targets_ = list(self.heads_)
        return self

    def _fit_head(self, head: TargetHead, fit: FitRows, name: str, y: np.ndarray,
                  weight: np.ndarray | None) -> TargetHead:
        """Fit one target's head on ``fit``: exactly on its rows, or streamed (``classifier.sampling``)."""
        cfg = self._config()
        columns = {"char_columns": self.vectorizer_.is_char_, "lead_columns": self.vectorizer_.is_lead_}
        if name not in fit.class_index:  # exact: every labeled row is in fit.X
            if fit.rows is not None:
                y = y[fit.rows]
                weight = _take(weight, fit.rows)
            has = np.array([v is not None for v in y], dtype=bool)
            return head.fit(self._head_rows(fit.X, has), y[has].astype(str),
                            sample_weight=_take(weight, np.flatnonzero(has)), **columns)
        stats = fit.statistics[name]
        assert fit.chunks is not None
        partial = bool((fit.class_index[name] < 0).any())  # labeled on part of the texts: its own min_df
        df = stats.document_frequency if partial else None
        sample = fit.calibration[name]
        X = self._head_rows(fit.X[sample], np.ones(len(sample), dtype=bool), df)
        final = FinalViews(fit.chunks, fit.class_index[name], stats.classes, cfg.model.C, cfg.model.class_weight,
                           cfg.model.sgd_epochs, cfg.seed, _threads(cfg.n_jobs),
                           None if df is None else df >= cfg.features.min_df, fit.weights.get(name),
                           stats.feature_squares)
        rows = sample if fit.rows is None else fit.rows[sample]
        final.sample_rows = rows  # a fused head holds part of them out of its final views (_fit_fused_held_out)
        return head.fit(X, y[rows].astype(str), sample_weight=_take(weight, rows), statistics=stats, final=final,
                        **columns)

    def _head_rows(self, X: sp.csr_matrix, has: np.ndarray,
                   document_frequency: np.ndarray | None = None) -> sp.csr_matrix:
        """The rows of ``X`` a head labeled on ``has`` learns from (``head_rows`` with the config's min_df)."""
        return head_rows(X, has, self._config().features.min_df, document_frequency)

    # -- introspection ----------------------------------------------------------------------------------
    def classes(self, target: str) -> list[str]:
        return [str(c) for c in self._head(target).classes_]

    @property
    def max_text_length(self) -> int:
        return self._config().max_text_length

    @property
    def review_threshold(self) -> float:
        return 0.5

    def _head(self, target: str) -> TargetHead:
        check_is_fitted(self, "heads_")
        try:
            return self.heads_[target]
        except KeyError:
            raise UnknownTargetError(
                f"unknown target {target!r}; this model predicts {self.targets_}"
            ) from None

    def _targets(self, targets: Sequence[str] | None) -> list[str]:
        check_is_fitted(self, "heads_")
        if targets is None:
            return list(self.targets_)
        if isinstance(targets, str):
            targets = [targets]
        for t in targets:
            self._head(t)
        return list(targets)

    def tokens(self, text: str) -> list[str]:
        check_is_fitted(self, "vectorizer_")
        return self.vectorizer_.tokens(text)

    # -- prediction -------------------------------------------------------------------------------------
    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        check_is_fitted(self, "vectorizer_")
        return self.vectorizer_.transform(check_texts(texts, self.max_text_length))

    def predict_proba(self, texts: Sequence[str], target: str,
                      places: Sequence[str | None] | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (n_texts, n_classes), columns in ``classes(target)`` order.
        ``places`` need a routing model (see ``predict_details``)."""
        head = self._head(target)
        X = self.transform(texts)
        _refuse_places(places, X.shape[0])
        return head.predict_proba(X)

    def predict(self, texts: Sequence[str], targets: Sequence[str] | None = None) -> dict[str, list[str]]:
        """The top label per target for each text: ``{"category": [...], "agency": [...]}``."""
        names = self._targets(targets)
        X = self.transform(texts)
        return {t: [str(c) for c in self.heads_[t].predict(X)] for t in names}

    def predict_details(
        self,
        texts: Sequence[str],
        top_k: int = 3,
        targets: Sequence[str] | None = None,
        explain: bool = False,
        thresholds: Mapping[str, float] | None = None,
        places: Sequence[str | None] | None = None,
        coverage: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """One result per text: under each target ``{"label", "score", "alternatives"}``, and ``needs_review``.

        ``alternatives`` are the ``top_k`` best labels with their probabilities, best first (the first is the
        label itself).  ``needs_review`` is true when any target's score is under its threshold.  ``places``
        (hints of where each case is) need a routing model: this one refuses them.  ``coverage``: a list to
        which each text's (tokens, tokens the model never saw in training) is appended, from the segmentation
        the prediction made (the decision log's drift signal; ``live.drift.token_coverage`` is the same count).
        """
        names = self._targets(targets)
        _check_top_k(top_k)
        texts = check_texts(texts, self.max_text_length)
        _refuse_places(places, len(texts))
        if len(texts) == 1:
            idx, val = self.vectorizer_.transform_one(texts[0], coverage=coverage)
            probas = {t: self.heads_[t].proba_one(idx, val)[None, :] for t in names}
            rows = [(idx, val)]
        else:
            X = self.vectorizer_.transform(texts, coverage=coverage)
            probas = {t: self.heads_[t].predict_proba(X) for t in names}
            rows = [(X.indices[X.indptr[i] : X.indptr[i + 1]], X.data[X.indptr[i] : X.indptr[i + 1]])
                    for i in range(X.shape[0])] if explain else []
        ranked = {t: _ranked_rows(self.heads_[t].classes_, probas[t], top_k) for t in names}
        results = []
        for i in range(len(texts)):
            result: dict[str, Any] = {}
            review = False
            for t in names:
                entry = ranked[t][i]
                if explain:
                    entry["explanation"] = self._explain_row(t, *rows[i], label=entry["label"])
                result[t] = entry
                threshold = (thresholds or {}).get(t, self.review_threshold)
                review = review or entry["score"] < threshold
            result["needs_review"] = review
            results.append(result)
        return results

    def predict_one(self, text: str, top_k: int = 3, explain: bool = False, **kw: Any) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ComplaintInputError(f"expected one text (str), got {type(text).__name__}")
        return self.predict_details([text], top_k=top_k, explain=explain, **kw)[0]

    # -- explanation ------------------------------------------------------------------------------------
    def explain(self, text: str, target: str, label: str | None = None, n_terms: int = 10) -> list[dict]:
        """The terms that pushed this text toward ``label`` (default: the predicted one), from the weights."""
        head = self._head(target)
        idx, val = self.vectorizer_.transform_one(check_texts([text], self.max_text_length)[0])
        if label is None:
            label = str(head.classes_[int(np.argmax(head.proba_one(idx, val)))])
        return self._explain_row(target, idx, val, label=label, n_terms=n_terms)

    def _explain_row(
        self, target: str, idx: np.ndarray, val: np.ndarray, label: str, n_terms: int = 10
    ) -> list[dict[str, Any]]:
        head = self.heads_[target]
        pos = np.searchsorted(head.classes_, label)
        if pos >= len(head.classes_) or head.classes_[pos] != label:
            raise ComplaintInputError(f"label {label!r} is not a class of target {target!r}")
        # a term seen in a single training case is never named: it would tell who was in the training data
        contrib = np.where(self.vectorizer_.explainable(idx), val * head.coef_[idx, pos], 0.0)
        names = self._feature_names()
        # every feature's push, merged into the words and n-grams a person reads (classifier/explanations.py)
        return readable_terms(((names[i], float(c)) for i, c in zip(idx, contrib) if c != 0.0), n_terms)

    def _feature_names(self) -> np.ndarray:
        names = getattr(self, "_names_cache", None)
        if names is None:
            names = self.vectorizer_.get_feature_names_out()
            self._names_cache = names
        return names

    def warm_up(self) -> ComplaintClassifier:
        """Load jieba's dictionaries and run one prediction so the first real request is fast."""
        check_is_fitted(self, "heads_")
        self.vectorizer_._tokenizer().warm_up()
        self.predict_details(["预热"], top_k=1)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_names_cache", None)
        state.pop("_plans", None)  # RoutedClassifier's per-place lookup caches, rebuilt on use
        state.pop("_agency_places_cache", None)
        return state


def prediction_record(
    result: Mapping[str, Any], targets: Sequence[str], thresholds: Mapping[str, float] | None = None,
    default_threshold: float = 0.5,
) -> dict[str, Any]:
    """The one external shape of a prediction, used by ``hotline predict --json`` and the service:
    ``{"targets": {name: {label, score, alternatives, threshold, needs_review, [review_reason], [explanation]}},
    "needs_review", ...}`` with any other key of ``result`` (``routing``) passed through.  An optional part is
    absent rather than null (a routing's ``reason``, a place's ``town`` when there is none).  A target needs
    review when its score is under its threshold, or when the model says why it must whatever the score
    (``review_reason``: a routed agency whose place the text and the hint do not decide)."""
    out: dict[str, Any] = {"targets": {}}
    for key, value in result.items():
        if key in targets and isinstance(value, dict):
            t = (thresholds or {}).get(key, default_threshold)
            out["targets"][key] = {**value, "threshold": t,
                                   "needs_review": value["score"] < t or "review_reason" in value}
        else:
            out[key] = _without_nulls(value)  # needs_review, routing, and whatever a wrapper adds
    return out


def _without_nulls(value: Any) -> Any:
    """``value`` with every dict entry whose value is None left out, at any depth."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise ComplaintInputError(f"top_k must be an integer from 1 to 50, got {top_k!r}")


def _ranked_rows(classes: np.ndarray, P: np.ndarray, top_k: int) -> list[dict[str, Any]]:
    """``{"label", "score", "alternatives"}`` for every row of ``P``: one sort for the whole batch, ties in
    class order."""
    k = min(top_k, len(classes))
    order = np.argsort(-P, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(P, order, axis=1).tolist()
    out = []
    for js, ss in zip(order.tolist(), scores, strict=True):
        alts = [{"label": str(classes[j]), "score": round(s, 6)} for j, s in zip(js, ss, strict=True)]
        out.append({"label": alts[0]["label"], "score": alts[0]["score"], "alternatives": alts})
    return out


def _is_label(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    return bool(str(v).strip())


def _progress_items(targets: Mapping[str, Any], enabled: bool) -> Iterator[tuple[str, Any]]:
    """The targets one by one, with a bar that names the one being fitted (its head's fits and out-of-fold
    calibration take most of a training run)."""
    from .progress import progress_bar

    items = list(targets.items())
    bar = progress_bar(total=len(items), desc="fitting", unit="target", enabled=enabled)
    try:
        for name, labels in items:
            bar.set_description(f"fitting {name}")
            yield name, labels
            bar.update(1)
    finally:
        bar.close()
