"""Jurisdiction-aware agency routing: the place decides where, the problem decides who.

``RoutedClassifier`` is a ``ComplaintClassifier`` with a routing directory.  Besides the flat heads (category,
agency) it trains a ``function`` head on the function of each labeled case's agency (looked up in the
directory), so every agency's cases teach the function for all counties.  At prediction time the agency is

    P(agency) = s * sum_f P(f) * [agency = directory(place, f)] + (1 - s * mapped mass) * P_flat(agency)

where ``place`` comes from the ``PlaceResolver`` and ``s`` is its score.  A town-level function (town
government, street office) needs the town: when only the county is known, its mass goes to that county's town
agencies in proportion to the flat model's belief in them.  When the text names no deciding place, a ``county``
head (trained on the county of every case's agency) proposes the counties, kept to those the text leaves open
(an ambiguous town's, tied counties, a named city's), and the sum runs over them weighted by its probabilities.
The county head is only asked about texts that name no place, so its temperature is fitted on out-of-fold
scores of exactly those training cases (it learned from all of them, most of which name their place and are
easy): a county guessed from a topic alone then has the low score it deserves and asks for review.
When there is no county head, or the directory has no entry, the flat agency model decides alone.

A routed agency's score is the probability that it is right, so no agency of the directory may score more
than the confidence in its place times the confidence in its function: ``P(agency) <= P(place) * P(f)``, with
P(place) the resolver's share of the evidence for a named county (the rest for any other county), the county
model's probability for a guessed one.  The flat model's share cannot lift an agency above that (the mass
capped away is given to no one: a row may sum to less than 1).  And a place the text and the hint do not
decide asks for review whatever the score (``review_reason``): the county model learned the training corpus's
topic-county correlations, which real complaints do not have, unless its guesses were checked on real
held-out cases (``check_place_guesses``).  Each result says which path produced its answer under
``"routing"``: the answer's county and function, and where the place came from (``place.source``:
"gazetteer", "hint", "model" or "none").

When the model also has a ``category`` head, category and function are decided together: the pairs seen in
training (a category and the function of its case's agency) are compatible, and

    P(category, f) ∝ sqrt(P_cat(category) * P_fn(f)) * (1 if the pair was seen else 0.01)

gives both the category and the function P(f) above (its marginals), so the answer never pairs a category
with an agency that does not handle it (治安管理 with a civil-affairs bureau) and one head's confidence can
overrule the other's mistake.  The geometric mean keeps the two heads' calibration: a plain product counts
the text's evidence twice and is overconfident (BENCHMARKS.md, routing).  A category or function without any
seen pair is not constrained.

Without a directory (``directory=None``) the model is exactly a ``ComplaintClassifier``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from .config import TrainingConfig
from .errors import ComplaintInputError, TrainingDataError
from .jurisdiction import PlaceMatch, PlaceResolver, RoutingDirectory
from .model import (
    ComplaintClassifier,
    TargetHead,
    _check_top_k,
    _fit_temperature,
    _is_label,
    _ranked_rows,
    check_places,
    check_texts,
)
from .text import ComplaintTokenizer

__all__ = ["RoutedClassifier", "routes", "unusable_place", "PLACE_HINT_IGNORED_MESSAGE", "FUNCTION", "COUNTY",
           "AGENCY", "CATEGORY"]

FUNCTION = "function"
COUNTY = "county"
AGENCY = "agency"
CATEGORY = "category"
_UNSEEN_PAIR = 0.01  # weight of a (category, function) pair never seen in training
_MIN_UNNAMED = 20  # training cases naming no place needed to calibrate the county head on them
_MAX_COUNTIES = 5  # counties the county model may spread an unnamed place over
_MIN_WEIGHT = 0.01
_MIN_GUESS_CHECK = 30  # guessed held-out cases routed without review needed to trust county-model guesses
_Z95 = 1.959964  # the 95 % interval's lower end: trust is not granted on a lucky sample


class RoutedClassifier(ComplaintClassifier):
    """A ``ComplaintClassifier`` whose agency comes from (place, function) through a routing directory.

    Parameters: those of ``ComplaintClassifier`` plus ``directory`` (a ``RoutingDirectory`` or None).

    After ``fit``: ``directory_``, ``resolver_``, ``heads_["function"]`` and ``heads_["county"]`` (not among
    ``targets_``, so results keep the flat model's shape), ``agency_classes_`` (the flat model's agencies
    plus every directory agency: the router can name an agency it never saw), ``pair_weights_`` (category x
    function weights of the joint decision, None without a category head), ``routing_summary_``.
    """

    directory_: RoutingDirectory | None
    resolver_: PlaceResolver

    def __init__(
        self,
        config: TrainingConfig | None = None,
        tokenizer: ComplaintTokenizer | None = None,
        progress: bool = False,
        directory: RoutingDirectory | None = None,
    ) -> None:
        super().__init__(config=config, tokenizer=tokenizer, progress=progress)
        self.directory = directory

    # -- fitting ----------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], targets: Mapping[str, Sequence[Any]],
            sample_weight: Sequence[float] | np.ndarray | None = None) -> RoutedClassifier:
        for derived in (FUNCTION, COUNTY):
            if derived in targets:
                raise TrainingDataError(f"{derived!r} is derived from the routing directory; do not pass it")
        self.__dict__.pop("_plans", None)
        fit = self._fit_matrix(texts, targets, sample_weight)
        if self.directory is not None and AGENCY in targets:
            agencies, categories = targets[AGENCY], targets.get(CATEGORY)
            weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
            if fit.rows is not None:  # a large corpus: the routing heads learn from the same sample of rows
                rows = fit.rows.tolist()
                agencies, texts = [agencies[i] for i in rows], [texts[i] for i in rows]
                categories = None if categories is None else [categories[i] for i in rows]
                weight = None if weight is None else weight[fit.rows]
            self._fit_routing(fit.X, agencies, categories, texts=texts, sample_weight=weight)
        else:
            self.directory_ = None
        return self

    @classmethod
    def from_classifier(
        cls, model: ComplaintClassifier, directory: RoutingDirectory, texts: Sequence[str],
        agencies: Sequence[Any], categories: Sequence[Any] | None = None,
    ) -> RoutedClassifier:
        """Add routing to an already trained flat model: reuse its vectorizer and heads, fit the function
        head on ``texts`` labeled with the functions of ``agencies``; with ``categories`` (the same texts'
        category labels) category and function are decided together.  Training metadata
        (``validation_report``, ``metrics``, ``training_data``) is carried over."""
        check_is_fitted(model, "heads_")
        if AGENCY not in model.heads_:
            raise TrainingDataError("routing needs a model trained with an 'agency' target")
        routed = cls(config=model.config, tokenizer=model.tokenizer, progress=model.progress, directory=directory)
        routed.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_") or k in _METADATA})
        routed.heads_ = dict(model.heads_)
        X = routed.vectorizer_.transform(check_texts(texts, routed.max_text_length))
        return routed._fit_routing(X, agencies, categories, texts=texts)

    def _fit_routing(self, X: sp.csr_matrix, agencies: Sequence[Any], categories: Sequence[Any] | None = None,
                     texts: Sequence[str] | None = None,
                     sample_weight: Sequence[float] | np.ndarray | None = None) -> RoutedClassifier:
        directory = self.directory
        if not isinstance(directory, RoutingDirectory):
            raise TrainingDataError(f"directory must be a RoutingDirectory, got {type(directory).__name__}")
        if len(agencies) != X.shape[0]:
            raise TrainingDataError(f"{len(agencies)} agency labels for {X.shape[0]} texts; they must match")
        functions = [directory.function_of(str(a)) if _is_label(a) else None for a in agencies]
        labeled = [a for a in agencies if _is_label(a)]
        unknown = sorted({str(a) for a in labeled} - set(directory.agencies))
        rows = np.array([f is not None for f in functions], dtype=bool)
        if len({f for f in functions if f is not None}) < 2:
            raise TrainingDataError(
                "the routing directory knows the function of fewer than 2 of the training agencies "
                f"(unknown agencies, e.g. {unknown[:5]}); check that agencies.csv matches the data's agency names"
            )
        cfg = self._config()
        head = TargetHead.from_config(cfg.model, random_state=cfg.seed)
        y = [str(f) for f in functions if f is not None]
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[rows]
        self.heads_[FUNCTION] = head.fit(self._head_rows(X, rows), y, char_columns=self.vectorizer_.is_char_,
                                 lead_columns=self.vectorizer_.is_lead_, sample_weight=weight)
        # every case also teaches its county (streets, villages, landmarks): used when the text names no place
        known = directory.agencies
        counties = [known[str(a)].county for a in agencies if _is_label(a) and str(a) in known]
        self.heads_.pop(COUNTY, None)
        self.__dict__.pop("_agency_places_cache", None)
        self.resolver_ = directory.resolver()
        county_calibration = None
        if len(set(counties)) >= 2:
            county_head = TargetHead.from_config(cfg.model, random_state=cfg.seed)
            X_county = self._head_rows(X, rows)
            self.heads_[COUNTY] = county_head.fit(X_county, counties, char_columns=self.vectorizer_.is_char_,
                                 lead_columns=self.vectorizer_.is_lead_, sample_weight=weight)
            if texts is not None:
                unnamed = np.array([self.resolver_.resolve(t).county is None
                                    for t, keep in zip(texts, rows) if keep], dtype=bool)
                county_calibration = self._calibrate_on_unnamed(county_head, X_county, np.asarray(counties),
                                                                unnamed)
        self.pair_weights_ = self._pair_weights(functions, categories)
        self.directory_ = directory
        flat = self.heads_[AGENCY].classes_
        self.agency_classes_ = np.array(sorted(set(map(str, flat)) | set(directory.agencies)), dtype=object)
        self._flat_cols_ = np.searchsorted(self.agency_classes_, flat.astype(str))
        self._agency_col_ = {a: i for i, a in enumerate(self.agency_classes_)}
        self.routing_summary_ = {
            **directory.summary(),
            "function_cases": int(rows.sum()),
            "agencies_not_in_directory": len(unknown),
            "category_function_pairs": 0 if self.pair_weights_ is None else int((self.pair_weights_ == 1.0).sum()),
            "county_calibration": county_calibration,
            "place_guess_check": None,
        }
        self.place_guess_check_: dict[str, Any] | None = None  # guesses ask for review until checked
        # save_model writes ``training_data`` into the manifest: the directory's hash travels with the model
        data = getattr(self, "training_data", None)
        self.training_data = {**(data if isinstance(data, dict) else {}), "directory": self.routing_summary_}
        return self

    def _calibrate_on_unnamed(self, head: TargetHead, X: sp.csr_matrix, counties: np.ndarray,
                              unnamed: np.ndarray) -> dict[str, Any] | None:
        """Refit ``head.temperature_`` on out-of-fold scores of the training cases that name no place (the
        only ones the county head will be asked about); None, head unchanged, when there are too few."""
        n_unnamed = int(unnamed.sum())
        if n_unnamed < _MIN_UNNAMED:
            return None
        classes = head.classes_
        _, counts = np.unique(counties, return_counts=True)
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=head.random_state)
        strat = counties if counts.min() >= 3 else np.zeros(len(counties))
        scores, truth = [], []
        for train, test in folds.split(np.zeros(len(counties)), strat):
            test = test[unnamed[test]]
            if not len(test) or len(np.unique(counties[train])) < 2:
                continue
            fold_head = clone(head).fit(X[train], counties[train], char_columns=self.vectorizer_.is_char_,
                                 lead_columns=self.vectorizer_.is_lead_)
            d = fold_head.decision_function(X[test])
            full = np.full((len(test), len(classes)), d.min() - 1.0)  # a county the fold never saw: least likely
            full[:, np.searchsorted(classes, fold_head.classes_)] = d
            scores.append(full)
            truth.append(np.searchsorted(classes, counties[test]))
        if not scores:
            return None
        oof, right = np.vstack(scores), np.concatenate(truth)
        head.temperature_ = _fit_temperature(oof, right)
        return {"unnamed_cases": n_unnamed, "temperature": round(float(head.temperature_), 6),
                "out_of_fold_accuracy": round(float(np.mean(oof.argmax(1) == right)), 4)}

    def _pair_weights(self, functions: Sequence[str | None], categories: Sequence[Any] | None) -> np.ndarray | None:
        """Category x function weights: 1 for a pair seen in training, ``_UNSEEN_PAIR`` otherwise; a category
        (or function) never seen in a pair is left unconstrained.  None without a category head."""
        if categories is None or CATEGORY not in self.heads_:
            return None
        if len(categories) != len(functions):
            raise TrainingDataError(f"{len(categories)} category labels for {len(functions)} agency labels; "
                                    "they must match")
        cats = self.heads_[CATEGORY].classes_.astype(str)
        fns = self.heads_[FUNCTION].classes_.astype(str)
        seen = np.zeros((len(cats), len(fns)), dtype=bool)
        for c, f in zip(categories, functions):
            if f is not None and _is_label(c):
                i, j = np.searchsorted(cats, str(c)), np.searchsorted(fns, f)
                if i < len(cats) and cats[i] == str(c) and j < len(fns) and fns[j] == f:
                    seen[i, j] = True
        if not seen.any():
            return None
        free = ~seen.any(1, keepdims=True) | ~seen.any(0, keepdims=True)
        return np.where(seen | free, 1.0, _UNSEEN_PAIR)

    def _joint(self, X: sp.csr_matrix) -> tuple[np.ndarray | None, np.ndarray]:
        """The category probabilities (None without a pair table) and the function probabilities, decided
        together: the marginals of sqrt(P_cat * P_fn) * pair weight (see the module docstring)."""
        pf = self.heads_[FUNCTION].predict_proba(X)
        weights = getattr(self, "pair_weights_", None)  # None too for a router pickled before joint decisions
        if weights is None:
            return None, pf
        pc = self.heads_[CATEGORY].predict_proba(X)
        joint = np.sqrt(pc)[:, :, None] * np.sqrt(pf)[:, None, :] * weights[None]
        joint /= joint.sum(axis=(1, 2), keepdims=True)
        return joint.sum(axis=2), joint.sum(axis=1)

    def _joint_targets(self) -> set[str]:
        """The targets whose answer goes through the router: the agency, and the category decided with it."""
        return {AGENCY, CATEGORY} if getattr(self, "pair_weights_", None) is not None else {AGENCY}

    def _routed(self) -> bool:
        return routes(self)

    def _directory(self) -> RoutingDirectory:
        if "directory_" not in self.__dict__:
            check_is_fitted(self, "directory_")
        if self.directory_ is None:
            raise TrainingDataError("this model was trained without a routing directory")
        return self.directory_

    # -- introspection ----------------------------------------------------------------------------------
    def classes(self, target: str) -> list[str]:
        if target == AGENCY and self._routed():
            return [str(c) for c in self.agency_classes_]
        return super().classes(target)

    def resolve_place(self, text: str) -> PlaceMatch:
        """The place a complaint is about (``level == "unknown"`` when nothing decides)."""
        check_is_fitted(self, "resolver_")
        return self.resolver_.resolve(check_texts([text], self.max_text_length)[0])

    # -- trusting the county model's guesses --------------------------------------------------------------
    def check_place_guesses(self, texts: Sequence[str], agencies: Sequence[Any], threshold: float = 0.5,
                            places: Sequence[str | None] | None = None,
                            min_cases: int = _MIN_GUESS_CHECK) -> dict[str, Any]:
        """Check the county model's guesses on real labeled cases the model never trained on, and trust them
        (route a guessed place without review when its score reaches the threshold) only if they earn it.

        Among the cases whose place the text and the hint do not decide (``place.source == "model"``), those
        scoring at least ``threshold`` are the ones a trusted guess would send out: they must number at least
        ``min_cases`` and the lower end of the 95 % (Wilson) interval of their accuracy must reach
        ``threshold``.  The result replaces any earlier check (``place_guess_check_``, also in
        ``routing_summary_``, which the manifest of a saved version shows); trust holds for thresholds at
        least ``threshold``.  Returns ``{"threshold", "cases", "guessed", "routed", "right", "accuracy",
        "accuracy_low", "trusted", "reason"}``."""
        self._directory()
        texts = check_texts(texts, self.max_text_length)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
            raise ComplaintInputError(f"threshold must be a probability in (0, 1], got {threshold!r}")
        if isinstance(agencies, str) or len(agencies) != len(texts):
            got = "a single str" if isinstance(agencies, str) else f"{len(agencies)}"
            raise TrainingDataError(f"expected one agency label per text ({len(texts)}), got {got}")
        details = self.predict_details(texts, top_k=1, targets=[AGENCY], places=places)
        truth = [str(a).strip() if _is_label(a) else None for a in agencies]
        guessed = [(d[AGENCY], t) for d, t in zip(details, truth)
                   if d["routing"]["place"]["source"] == "model" and t is not None]
        routed = [(e, t) for e, t in guessed if e["score"] >= threshold]
        right = sum(e["label"] == t for e, t in routed)
        n = len(routed)
        accuracy = right / n if n else None
        low = _wilson_low(right, n) if n else None
        trusted = n >= min_cases and low is not None and low >= threshold
        if n < min_cases:
            reason = (f"{n} guessed cases score at least {threshold} (of {len(guessed)} guessed); at least "
                      f"{min_cases} are needed: guessed places keep asking for review")
        elif not trusted:
            reason = (f"{right} of {n} guessed cases scoring at least {threshold} were right ({accuracy:.3f}, 95 % "
                      f"interval from {low:.3f}), under the threshold: guessed places keep asking for review")
        else:
            reason = (f"{right} of {n} guessed cases scoring at least {threshold} were right ({accuracy:.3f}, 95 % "
                      f"interval from {low:.3f}): guesses scoring at least {threshold} go out without review")
        check = {"threshold": float(threshold), "cases": len(texts), "guessed": len(guessed), "routed": n,
                 "right": right, "accuracy": None if accuracy is None else round(accuracy, 4),
                 "accuracy_low": None if low is None else round(low, 4), "trusted": trusted, "reason": reason}
        self.place_guess_check_ = check
        self.routing_summary_ = {**self.routing_summary_, "place_guess_check": check}
        data = getattr(self, "training_data", None)
        if isinstance(data, dict) and "directory" in data:
            self.training_data = {**data, "directory": self.routing_summary_}
        return check

    # -- prediction -------------------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], target: str,
                      places: Sequence[str | None] | None = None) -> np.ndarray:
        """As ``ComplaintClassifier.predict_proba``; for "agency" the routed probabilities over
        ``classes("agency")`` (with the ``places`` hints of ``predict_details``), for "category" those decided
        together with the function."""
        if not self._routed() or target not in self._joint_targets():
            if self._routed():  # a head the place does not change: check the hints, then leave them out
                check_places(places, len(check_texts(texts, self.max_text_length)))
                places = None
            return super().predict_proba(texts, target, places=places)
        texts = check_texts(texts, self.max_text_length)
        hints = check_places(places, len(texts))
        X = self.vectorizer_.transform(texts)
        pc, pf = self._joint(X)
        if target == CATEGORY and pc is not None:
            return pc
        P, _ = self._route(texts, X, pf, hints)
        return P

    def predict(self, texts: Sequence[str], targets: Sequence[str] | None = None) -> dict[str, list[str]]:
        names = self._targets(targets)
        if not self._routed() or not self._joint_targets() & set(names):
            return super().predict(texts, targets)
        details = self.predict_details(texts, top_k=1, targets=names)
        return {t: [d[t]["label"] for d in details] for t in names}

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
        """As ``ComplaintClassifier.predict_details``, with the agency routed and a ``"routing"`` entry:
        ``{"path": "directory" | "flat", "place": {...}, "function": {"label", "score"}, "reason"}``.

        ``places``: one hint per text (None or "" for none) of where the case is, as the caller knows it (the
        web form's district, the county whose hotline line was called).  It is used only when the text itself
        names no county or town: then it decides the place (``place.source`` "hint") and settles a town name
        found in two counties; a hint naming only a city (a city-wide hotline) keeps the county model's guess
        among that city's counties.  A hint that names no known place is reported in ``reason``."""
        names = self._targets(targets)
        if not self._routed() or not self._joint_targets() & set(names):
            if self._routed():  # only the category: the place changes nothing
                texts = check_texts(texts, self.max_text_length)
                check_places(places, len(texts))
                places = None
            return super().predict_details(texts, top_k=top_k, targets=targets, explain=explain,
                                           thresholds=thresholds, places=places, coverage=coverage)
        _check_top_k(top_k)
        texts = check_texts(texts, self.max_text_length)
        hints = check_places(places, len(texts))
        if len(texts) == 1:
            idx, val = self.vectorizer_.transform_one(texts[0], coverage=coverage)
            X = sp.csr_matrix((val, idx, np.array([0, len(idx)])), shape=(1, len(self.vectorizer_.vocabulary_)))
        else:
            X = self.vectorizer_.transform(texts, coverage=coverage)
        pc, pf = self._joint(X)
        probas = {t: pc if t == CATEGORY and pc is not None else self.heads_[t].predict_proba(X)
                  for t in names if t != AGENCY}
        ranked = {t: _ranked_rows(self.heads_[t].classes_, p, top_k) for t, p in probas.items()}
        routes: list[dict[str, Any]] = [{} for _ in texts]
        if AGENCY in names:
            P, routes = self._route(texts, X, pf, hints)
            ranked[AGENCY] = _ranked_rows(self.agency_classes_, P, top_k)
        results = []
        for i in range(len(texts)):
            row = (X.indices[X.indptr[i] : X.indptr[i + 1]], X.data[X.indptr[i] : X.indptr[i + 1]])
            result: dict[str, Any] = {}
            review = False
            if routes[i]:
                routes[i] = self._settle_route(routes[i], ranked[AGENCY][i]["label"])
            for t in names:
                entry = ranked[t][i]
                if explain and t == AGENCY:
                    entry["explanation"] = self._explain_agency(row, entry["label"], routes[i])
                elif explain:
                    entry["explanation"] = self._explain_row(t, *row, label=entry["label"])
                threshold = (thresholds or {}).get(t, self.review_threshold)
                if t == AGENCY:
                    why = self._review_reason(routes[i], threshold)
                    if why is not None:
                        entry["review_reason"] = why
                        review = True
                result[t] = entry
                review = review or entry["score"] < threshold
            result["needs_review"] = review
            if routes[i]:
                result["routing"] = routes[i]
            results.append(result)
        return results

    def _route(self, texts: Sequence[str], X: sp.csr_matrix, pf: np.ndarray,
               hints: Sequence[str | None] | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Routed agency probabilities (n_texts x len(agency_classes_)) and each text's routing record (to be
        settled on the answer by ``_settle_route``), from the function probabilities ``pf`` (``_joint``) and
        the place hints (``check_places``).

        Every directory agency's probability is capped at the confidence in its place times the confidence in
        its function (``_place_confidence``): the flat model's share (the place's doubt, functions the directory
        cannot place) may not lift an agency above what its place and function support.  The mass capped away
        is not handed to another agency: a row then sums to less than 1."""
        fn_head = self.heads_[FUNCTION]
        flat = self.heads_[AGENCY].predict_proba(X)
        county_head = self.heads_.get(COUNTY)
        pc = county_head.predict_proba(X) if county_head is not None else None
        P = np.zeros((len(texts), len(self.agency_classes_)), dtype=np.float64)
        P[:, self._flat_cols_] = flat
        routes = []
        for i, text in enumerate(texts):
            place = self.resolver_.resolve(text)
            source, note = "gazetteer", None
            hint = hints[i] if hints is not None else None
            if hint is not None and place.county is None:
                # the hint first, then the text: the hint's county anchors the text's towns
                hinted = self.resolver_.resolve(f"{hint}\n{text}")
                if hinted.county is not None:
                    place, source = hinted, "hint"
                elif hinted.level == "city" and place.level != "city":
                    place = hinted  # a city-wide hotline's hint: the county model chooses among its counties
                    note = f"the place hint {hint!r} names only a city"
                else:
                    note = f"the place hint {hint!r} names no county or town of the directory"
            top = int(np.argmax(pf[i]))
            named = {**_place_dict(place), "source": source if place.county is not None else "none"}
            route: dict[str, Any] = {
                "path": "flat",
                "place": named,
                "function": {"label": str(fn_head.classes_[top]), "score": round(float(pf[i, top]), 6)},
                "reason": note,
                "_named": named,
                "_pf": pf[i],
            }
            flat_row = P[i].copy()
            guesses: dict[str, tuple[str | None, float]] = {}
            if place.county is not None:
                weighted = [(place.county, place.town, float(place.score))]
            else:
                weighted, guesses = self._county_guess(place, pc[i] if pc is not None else None)
                route["_guesses"] = guesses
            if not weighted:
                P[i] = np.minimum(P[i], self._caps(pf[i], place, guesses))
                _add_reason(route, "the text names only a city; agencies are per county" if place.level == "city"
                            else "no county or town in the text decides the place")
                routes.append(route)
                continue
            mapped = np.zeros(len(self.agency_classes_), dtype=np.float64)
            mass = 0.0
            for county, town, w in weighted:
                m, ms = self._directory_mass(pf[i], county, town, flat_row)
                mapped += w * m
                mass += w * ms
            if mass == 0.0:
                P[i] = np.minimum(P[i], self._caps(pf[i], place, guesses))
                where = place.name if place.county is not None else weighted[0][0]
                _add_reason(route, f"the directory has no agency for these functions in {where}")
                routes.append(route)
                continue
            # the directory's share never exceeds a ceiling (weight x function probability): only the flat
            # model's share can, so the ceilings are needed only when it has one
            P[i] = mapped if mass >= 1.0 - 1e-12 else np.minimum(mapped + (1.0 - mass) * flat_row,
                                                                  self._caps(pf[i], place, guesses))
            route["path"] = "directory"
            route["_mapped"] = {str(self.agency_classes_[j]) for j in np.flatnonzero(mapped)}
            routes.append(route)
        return P, routes

    def _settle_route(self, route: dict[str, Any], label: str) -> dict[str, Any]:
        """The routing record of the answer ``label``: on the directory path its place is the agency's county
        (the county model's guess of it, with that county's probability, when the text named none) and its
        function the agency's function with its probability; otherwise (the flat model answered) the place the
        text or the hint named, if any, never a guess that produced no answer."""
        named, pf = route.pop("_named"), route.pop("_pf")
        guesses: dict[str, tuple[str | None, float]] = route.pop("_guesses", {})
        mapped: set[str] = route.pop("_mapped", set())
        directory = self._directory()
        agency = directory.agencies.get(label)
        fns = [str(f) for f in self.heads_[FUNCTION].classes_]
        if route["path"] == "directory" and agency is not None and label in mapped and agency.function in fns:
            route["function"] = {"label": agency.function, "score": round(float(pf[fns.index(agency.function)]), 6)}
            if guesses:
                town, w = guesses[agency.county]
                route["place"] = {**named, "name": town or agency.county, "level": "town" if town else "county",
                                  "city": directory.county_city(agency.county), "county": agency.county,
                                  "town": town, "score": round(w, 4), "source": "model"}
                _add_reason(route, "the text and the hint leave the place open; the county model chose among "
                            "its counties" if named["mentions"]
                            else "the place was not named; the county model inferred it from the text")
            place = route["place"]
            if directory.agency_for(agency.function, place["county"], place["town"]) is None:
                _add_reason(route, f"{agency.function} needs a town; spread over {place['county']}'s towns by "
                                   "the flat model" if agency.function in directory.town_functions
                            and place["town"] is None
                            else f"the directory has no {agency.function} agency in {place['name']}")
            return route
        if route["path"] == "directory":
            route["path"] = "flat"
            _add_reason(route, "the flat model outweighed the county model's guesses" if guesses
                        else "the flat model outweighed the directory's candidates")
        elif guesses:
            _add_reason(route, "the place was not named; the flat model answered")
        route["place"] = named
        return route

    def _review_reason(self, route: dict[str, Any], threshold: float) -> str | None:
        """Why the routed agency needs review whatever its score: its place was not named in the text or the
        hint (guessed by the county model, or not decided at all).  None when the place was named, or when
        county-model guesses were checked on real held-out cases to be right at least as often as
        ``threshold`` promises (``check_place_guesses``)."""
        if not route:
            return None
        source = route["place"]["source"]
        if source in ("gazetteer", "hint"):
            return None
        if source == "model":
            check = getattr(self, "place_guess_check_", None)
            if check is not None and check["trusted"] and threshold >= check["threshold"]:
                return None
            return (f"the text and the hint do not decide the county; {route['place']['name']} is the county "
                    "model's guess, not shown on held-out cases to be as reliable as the threshold says")
        return "the text and the hint do not decide the county; the flat agency model answered"

    def _caps(self, pf: np.ndarray, place: PlaceMatch, guesses: Mapping[str, tuple[str | None, float]]
              ) -> np.ndarray:
        """Each agency's ceiling: the confidence in its place times the confidence in its function (``pf``).

        The place: a named county has the resolver's score ``s`` and every other county ``1 - s`` (a town of
        the named county other than the named town: the smaller of the two); a guessed county has the county
        model's probability (0 for a county it did not propose); with neither, 1.  An agency outside the
        directory has no ceiling."""
        counties, county_idx, cols, agency_county, agency_fn, towns = self._agency_places()
        if place.county is not None:
            s = float(place.score)
            conf = np.full(len(counties), 1.0 - s)
            conf[county_idx[place.county]] = s
        elif guesses:
            conf = np.zeros(len(counties))
            for county, (_, w) in guesses.items():
                conf[county_idx[county]] = w
        else:
            conf = np.ones(len(counties))
        fn = np.append(pf, 0.0)  # index -1: a function the function head never saw
        caps = np.full(len(self.agency_classes_), np.inf)
        caps[cols] = conf[agency_county] * fn[agency_fn]
        if place.county is not None and place.town is not None:
            k = county_idx[place.county]
            elsewhere = min(conf[k], 1.0 - conf[k])
            for col, town, f in towns.get(place.county, ()):
                if town != place.town:
                    caps[col] = elsewhere * fn[f]
        return caps

    def _agency_places(self) -> tuple[list[str], dict[str, int], np.ndarray, np.ndarray, np.ndarray,
                                      dict[str, list[tuple[int, str, int]]]]:
        """The directory's agencies among ``agency_classes_``: their columns, each one's county (index into
        ``counties``) and function (index into the function head's classes, -1 if it never saw it), and per
        county its town-level agencies (column, town, function index); computed once."""
        cached = self.__dict__.get("_agency_places_cache")
        if cached is None:
            directory = self._directory()
            counties = directory.counties()
            county_idx = {c: k for k, c in enumerate(counties)}
            fns = {str(f): k for k, f in enumerate(self.heads_[FUNCTION].classes_)}
            known = [(j, directory.agencies[str(a)]) for j, a in enumerate(self.agency_classes_)
                     if str(a) in directory.agencies]
            towns: dict[str, list[tuple[int, str, int]]] = {}
            for j, a in known:
                if a.town is not None:
                    towns.setdefault(a.county, []).append((j, a.town, fns.get(a.function, -1)))
            cached = (counties, county_idx, np.array([j for j, _ in known], dtype=np.intp),
                      np.array([county_idx[a.county] for _, a in known], dtype=np.intp),
                      np.array([fns.get(a.function, -1) for _, a in known], dtype=np.intp), towns)
            self.__dict__["_agency_places_cache"] = cached
        return cached

    def _county_guess(self, place: PlaceMatch, pc: np.ndarray | None
                      ) -> tuple[list[tuple[str, str | None, float]], dict[str, tuple[str | None, float]]]:
        """(county, town, weight) from the county model when the text does not name a deciding place, kept to
        the counties the text leaves open (an ambiguous town's, tied counties, a named city's); and every
        county the model could mean with its (town, probability), for the agencies' ceilings."""
        if pc is None:
            return [], {}
        classes = [str(c) for c in self.heads_[COUNTY].classes_]
        directory = self._directory()
        towns: dict[str, str | None] = {}
        if place.candidates:
            for county, town in place.candidates:
                towns.setdefault(county, town)
            allowed = list(towns)
        elif place.level == "city":
            allowed = [c for c in directory.counties() if directory.county_city(c) == place.city]
        else:
            allowed = []
        if allowed:
            # the text itself narrowed the place to these counties: the model's belief, smoothed so a county
            # it never saw a case from still counts, renormalized over them
            belief = dict(zip(classes, pc.tolist()))
            # (all of them: the place is certainly among them, so none of its mass may fall to the flat model)
            w = np.array([belief.get(c, 0.0) + 1.0 / len(classes) for c in allowed])
            counties, p, cap = allowed, w / w.sum(), len(allowed)
        else:
            counties, p, cap = classes, pc, _MAX_COUNTIES
        order = np.argsort(-np.asarray(p), kind="stable")[:cap]
        every = {c: (towns.get(c), float(v)) for c, v in zip(counties, np.asarray(p).tolist())}
        return [(counties[j], towns.get(counties[j]), float(p[j])) for j in order if p[j] >= _MIN_WEIGHT], every

    def _directory_mass(
        self, pf: np.ndarray, county: str, town: str | None, flat_row: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Each agency's probability from the functions the directory can place here, and their total."""
        fixed_fns, fixed_cols, spread = self._place_plan(county, town)
        mapped = np.zeros(len(self.agency_classes_), dtype=np.float64)
        np.add.at(mapped, fixed_cols, pf[fixed_fns])
        mass = float(pf[fixed_fns].sum())
        for j, cols in spread:
            # the flat model's belief in each of the county's towns; what it puts elsewhere is spread
            # evenly, so a guess between towns keeps a low score and asks for review
            p = float(pf[j])
            belief = flat_row[cols]
            mapped[cols] += p * (belief + (1.0 - belief.sum()) / len(cols))
            mass += p
        return mapped, mass

    def _place_plan(self, county: str, town: str | None) -> tuple[np.ndarray, np.ndarray, list]:
        """For one place, which functions the directory maps to one agency column (function indices, agency
        columns) and which town-level ones spread over the county's towns; computed once per place."""
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get((county, town))
        if plan is None:
            directory, col = self._directory(), self._agency_col_
            fns, cols, spread = [], [], []
            for j, fn in enumerate(self.heads_[FUNCTION].classes_):
                agency = directory.agency_for(str(fn), county, town)
                if agency is not None:
                    fns.append(j)
                    cols.append(col[agency])
                elif town is None and fn in directory.town_functions:
                    town_cols = np.array([col[a] for a in directory.town_agencies(str(fn), county)], dtype=np.intp)
                    if len(town_cols):
                        spread.append((j, town_cols))
            plan = cache[(county, town)] = (np.array(fns, dtype=np.intp), np.array(cols, dtype=np.intp), spread)
        return plan

    def _explain_agency(self, row: tuple[np.ndarray, np.ndarray], label: str, route: dict[str, Any]) -> list:
        if route["path"] == "directory":
            fn = self._directory().function_of(label)
            if fn is not None and fn in set(self.heads_[FUNCTION].classes_):
                return self._explain_row(FUNCTION, *row, label=fn)
        if label in set(self.heads_[AGENCY].classes_):
            return self._explain_row(AGENCY, *row, label=label)
        return []

    def explain(self, text: str, target: str, label: str | None = None, n_terms: int = 10) -> list[dict]:
        """For a routed agency: the terms that pushed the text toward the agency's function."""
        if target != AGENCY or not self._routed():
            return super().explain(text, target, label=label, n_terms=n_terms)
        result = self.predict_details([text], top_k=1, targets=[AGENCY])[0]
        label = label or result[AGENCY]["label"]
        fn = self._directory().function_of(label)
        if result["routing"]["path"] == "directory" and fn in set(self.heads_[FUNCTION].classes_):
            return super().explain(text, FUNCTION, label=fn, n_terms=n_terms)
        return super().explain(text, AGENCY, label=label, n_terms=n_terms)


_METADATA = ("validation_report", "metrics", "training_data", "manifest")


def routes(model: Any) -> bool:
    """Whether ``model`` routes its agency through a directory (a fitted ``RoutedClassifier`` with one)."""
    return getattr(model, "directory_", None) is not None


# what the service (``warnings``) and ``hotline predict --place`` say about a hint the directory cannot place
PLACE_HINT_IGNORED_MESSAGE = (
    "the place hint names no county, town or city of the model's routing directory and was ignored: the place "
    "came from the text or, when the text names none, from the county model's guess; send a county, town or city "
    "name of the routing directory")


def unusable_place(model: Any, place: str) -> bool:
    """The routing model's directory knows no county, town or city in ``place``."""
    match = model.resolve_place(place)
    return match.county is None and match.level != "city"


def _wilson_low(right: int, n: int) -> float:
    """The lower end of the 95 % Wilson score interval of ``right`` successes in ``n`` trials."""
    p, z2 = right / n, _Z95 * _Z95
    centre = p + z2 / (2 * n)
    spread = _Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return float((centre - spread) / (1 + z2 / n))


def _add_reason(route: dict[str, Any], why: str) -> None:
    route["reason"] = f"{route['reason']}; {why}" if route["reason"] else why


def _place_dict(place: PlaceMatch) -> dict[str, Any]:
    d = place.to_dict()
    d["score"] = round(float(d["score"]), 4)
    return d
