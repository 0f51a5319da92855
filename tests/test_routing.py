"""RoutedClassifier: function head, (place, function) -> agency, flat fallback, drop-in for ComplaintClassifier."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from classifier.errors import ComplaintInputError, EmptyTextError, NotAListError, TrainingDataError
from classifier.model import ComplaintClassifier
from classifier.routing import RoutedClassifier
from classifier.store import ModelStore
from tests.conftest import TINY_CASES, tiny_config
from training.demo import demo_directory
from training.train import save_model

TEXTS = [t for t, _, _ in TINY_CASES]
TARGETS = {"category": [c for _, c, _ in TINY_CASES], "agency": [a for _, _, a in TINY_CASES]}


@pytest.fixture(scope="module")
def directory():  # noqa: ANN201
    return demo_directory()


@pytest.fixture(scope="module")
def routed(directory) -> RoutedClassifier:
    return RoutedClassifier(tiny_config(), directory=directory).fit(TEXTS, TARGETS)


def test_function_head_learns_the_functions_of_the_agencies(routed):
    assert routed.classes("function") == ["housing", "town_gov", "traffic_police", "transport"]
    assert routed.classes("county") == ["兴庆区", "同心县", "大武口区", "海原县"]
    assert routed.targets_ == ["category", "agency"]  # results keep the flat shape
    assert routed.routing_summary_["function_cases"] == 12
    assert routed.routing_summary_["agencies_not_in_directory"] == 0


def test_routes_to_an_agency_of_a_county_it_never_saw(routed):
    # the tiny cases only know 同心县交通运输局; the directory knows every county's
    result = routed.predict_one("隆德县的出租车拒载，还骂乘客")
    assert result["agency"]["label"] == "隆德县交通运输局"
    assert "隆德县交通运输局" not in routed.heads_["agency"].classes_
    routing = result["routing"]
    assert routing["path"] == "directory"
    assert routing["function"]["label"] == "transport"
    assert routing["place"] == {
        "name": "隆德县", "level": "county", "city": "固原市", "county": "隆德县", "town": None, "score": 1.0,
        "mentions": ["隆德县"], "ambiguous": [], "source": "gazetteer",
    }
    assert routing["reason"] is None
    assert result["agency"]["score"] == pytest.approx(routing["function"]["score"], abs=1e-6)


def test_town_level_function_uses_the_resolved_town(routed):
    result = routed.predict_one("西吉县兴隆镇村里的空气能坏了，家里冻得不行")
    assert result["agency"]["label"] == "西吉县兴隆镇政府"
    assert result["routing"]["path"] == "directory"
    assert result["routing"]["place"]["town"] == "兴隆镇"


def test_town_level_function_without_a_town_stays_in_the_county_and_asks_for_review(routed):
    result = routed.predict_one("西吉县村里的空气能坏了，家里冻得不行")
    agency = result["agency"]
    assert agency["label"].startswith("西吉县") and agency["label"].endswith("政府")
    assert agency["score"] < 0.5 and result["needs_review"] is True
    assert "needs a town" in result["routing"]["reason"]


def test_unnamed_place_is_inferred_by_the_county_model(routed):
    # no place named: the county head (trained on every case's county) decides, with its probability as score
    result = routed.predict_one("村里的空气能坏了，家里冻得不行")
    routing = result["routing"]
    assert routing["path"] == "directory"
    assert (routing["place"]["source"], routing["place"]["county"]) == ("model", "海原县")
    assert 0 < routing["place"]["score"] <= 1
    assert routing["reason"] == ("the place was not named; the county model inferred it from the text; "
                                 "town_gov needs a town; spread over 海原县's towns by the flat model")
    assert result["agency"]["label"] == "海原县李旺镇政府"


def test_a_city_alone_keeps_the_county_model_inside_that_city(routed):
    # the county model has no belief about 银川市's counties here: the function's mass is shared by all six of
    # them (none falls to the flat model, whose agency is in 同心县), and the answer asks for review
    result = routed.predict_one("银川市的出租车拒载")
    assert result["routing"]["place"]["city"] == "银川市"
    yinchuan = ["兴庆区", "金凤区", "西夏区", "永宁县", "贺兰县", "灵武市"]
    alternatives = result["agency"]["alternatives"]
    assert {a["label"] for a in alternatives} <= {f"{c}交通运输局" for c in yinchuan}
    assert [a["score"] for a in alternatives] == pytest.approx([1 / 6] * 3, abs=0.01)
    assert result["needs_review"] is True


def test_an_ambiguous_town_keeps_the_county_model_to_its_counties(routed):
    result = routed.predict_one("古城镇的出租车拒载，还骂乘客")
    place = result["routing"]["place"]
    assert (place["county"], place["town"]) in {("利通区", "古城镇"), ("彭阳县", "古城镇")}
    assert place["score"] == pytest.approx(0.5, abs=0.01)  # the model knows neither county: a coin toss
    assert result["agency"]["label"] == f"{place['county']}交通运输局"
    assert result["agency"]["score"] <= 0.51  # half the mass went to the other county


def test_unknown_place_without_a_county_model_falls_back_to_the_flat_model(routed):
    no_county = copy.deepcopy(routed)
    del no_county.heads_["county"]
    text = "村里的空气能坏了，家里冻得不行"
    result = no_county.predict_one(text)
    assert result["routing"]["path"] == "flat"
    assert result["routing"]["place"]["level"] == "unknown"
    assert result["routing"]["reason"] == "no county or town in the text decides the place"
    flat = no_county.heads_["agency"].predict(no_county.transform([text]))[0]
    assert result["agency"]["label"] == flat == "海原县李旺镇政府"
    city = no_county.predict_one("银川市的出租车拒载")["routing"]
    assert (city["path"], city["reason"]) == ("flat", "the text names only a city; agencies are per county")


def test_top_k_combines_top_functions_with_the_place(routed):
    result = routed.predict_one("隆德县的出租车拒载，还骂乘客", top_k=3)
    alts = result["agency"]["alternatives"]
    assert [a["label"] for a in alts][0] == "隆德县交通运输局"
    assert all(a["label"].startswith("隆德县") for a in alts)
    assert [a["score"] for a in alts] == sorted((a["score"] for a in alts), reverse=True)


def test_routed_probabilities_are_a_distribution_over_all_directory_agencies(routed, directory):
    proba = routed.predict_proba(TEXTS + ["隆德县的出租车拒载"], "agency")
    assert proba.shape == (13, len(routed.classes("agency")))
    assert set(directory.agencies) <= set(routed.classes("agency"))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    classes = routed.classes("agency")
    assert classes[int(np.argmax(proba[-1]))] == "隆德县交通运输局"


def test_still_fits_its_training_cases(routed):
    assert routed.predict(TEXTS) == {"category": TARGETS["category"], "agency": TARGETS["agency"]}


def test_batch_equals_one_by_one(routed):
    texts = [*TEXTS, "隆德县的出租车拒载", "村里的空气能坏了"]
    batch = routed.predict_details(texts, top_k=3)
    single = [routed.predict_details([t], top_k=3)[0] for t in texts]
    for b, s in zip(batch, single):
        assert b["agency"]["label"] == s["agency"]["label"]
        assert b["agency"]["score"] == pytest.approx(s["agency"]["score"], abs=1e-5)
        assert b["routing"]["path"] == s["routing"]["path"]


def test_result_shape_matches_the_flat_model(routed, tiny_model):
    flat = tiny_model.predict_details(["同心县的出租车拒载"])[0]
    mine = routed.predict_details(["同心县的出租车拒载"])[0]
    assert set(mine) == set(flat) | {"routing"}
    assert set(mine["agency"]) == set(flat["agency"]) == {"label", "score", "alternatives"}
    only_category = routed.predict_details(["同心县的出租车拒载"], targets=["category"])[0]
    assert set(only_category) == {"category", "needs_review"}


def test_explanation_of_a_routed_agency_is_the_function_evidence(routed):
    result = routed.predict_details(["隆德县的出租车拒载，还骂乘客"], explain=True)[0]
    terms = [e["term"] for e in result["agency"]["explanation"]]
    # the transport cases' shared evidence (出租车, 班车, 打车; 乘客, 客运站); 拒载 and 出租车 are in one training
    # case each, and an explanation never names a term from a single case (issue 15)
    assert {"车", "客"} & set(terms) and not {"拒载", "出租车"} & set(terms)
    assert all(e["weight"] > 0 for e in result["agency"]["explanation"])
    assert routed.explain("隆德县的出租车拒载，还骂乘客", "agency")[0]["term"] == terms[0]


def test_thresholds_apply_to_the_routed_score(routed):
    result = routed.predict_details(["隆德县的出租车拒载，还骂乘客"], thresholds={"agency": 1.01})[0]
    assert result["needs_review"] is True


def test_bad_input_gets_the_flat_models_errors(routed):
    with pytest.raises(NotAListError, match="expected a list of texts"):
        routed.predict_details("隆德县的出租车拒载")
    with pytest.raises(EmptyTextError, match="text #0 is empty"):
        routed.predict_details(["  "])
    with pytest.raises(ComplaintInputError, match="top_k must be an integer from 1 to 50"):
        routed.predict_details(["隆德县的出租车拒载"], top_k=0)


def test_without_a_directory_it_is_the_flat_model(tiny_model):
    plain = RoutedClassifier(tiny_config()).fit(TEXTS, TARGETS)
    probe = ["同心县的出租车拒载", "隆德县的出租车拒载"]
    assert plain.predict_details(probe) == tiny_model.predict_details(probe)
    np.testing.assert_allclose(
        plain.predict_proba(probe, "agency"), tiny_model.predict_proba(probe, "agency"), atol=1e-6
    )
    assert plain.classes("agency") == tiny_model.classes("agency")


def test_only_category_data_trains_no_router(directory):
    model = RoutedClassifier(tiny_config(), directory=directory).fit(TEXTS, {"category": TARGETS["category"]})
    assert model.directory_ is None
    assert "routing" not in model.predict_details(["同心县的出租车拒载"])[0]


def test_training_errors_are_clear(directory):
    with pytest.raises(TrainingDataError, match="'function' is derived from the routing directory"):
        RoutedClassifier(tiny_config(), directory=directory).fit(TEXTS, {**TARGETS, "function": TARGETS["agency"]})
    with pytest.raises(TrainingDataError, match="'county' is derived from the routing directory"):
        RoutedClassifier(tiny_config(), directory=directory).fit(TEXTS, {**TARGETS, "county": TARGETS["agency"]})
    strangers = {"category": TARGETS["category"], "agency": [f"某单位{i % 3}" for i in range(12)]}
    with pytest.raises(TrainingDataError, match="knows the function of fewer than 2 of the training agencies"):
        RoutedClassifier(tiny_config(), directory=directory).fit(TEXTS, strangers)
    with pytest.raises(TrainingDataError, match="directory must be a RoutingDirectory, got dict"):
        RoutedClassifier(tiny_config(), directory={"not": "a directory"}).fit(TEXTS, TARGETS)


def test_from_classifier_adds_routing_to_a_trained_flat_model(tiny_model, directory):
    routed = RoutedClassifier.from_classifier(tiny_model, directory, TEXTS, TARGETS["agency"])
    assert routed.vectorizer_ is tiny_model.vectorizer_
    assert routed.predict_one("隆德县的出租车拒载")["agency"]["label"] == "隆德县交通运输局"
    assert "function" not in tiny_model.heads_  # the flat model is left as it was
    category_only = ComplaintClassifier(tiny_config()).fit(TEXTS, {"category": TARGETS["category"]})
    with pytest.raises(TrainingDataError, match="needs a model trained with an 'agency' target"):
        RoutedClassifier.from_classifier(category_only, directory, TEXTS, TARGETS["agency"])


def test_saves_and_loads_from_the_store_with_the_directory_hash(routed, directory, tmp_path):
    store = ModelStore(tmp_path / "store")
    version = save_model(routed, store)
    loaded = store.load(version)
    assert isinstance(loaded.model, RoutedClassifier)
    assert loaded.manifest["data"]["directory"]["sha256"] == directory.sha256
    assert loaded.manifest["data"]["directory"]["agencies"] == 575
    probe = ["隆德县的出租车拒载", "村里的空气能坏了"]
    np.testing.assert_array_equal(loaded.model.predict_proba(probe, "agency"), routed.predict_proba(probe, "agency"))
    assert loaded.model.predict_details(probe) == routed.predict_details(probe)
    assert loaded.model.warm_up() is loaded.model


def test_resolve_place_checks_its_input(routed):
    assert routed.resolve_place("李旺的暖气").town == "李旺镇"
    with pytest.raises(EmptyTextError):
        routed.resolve_place("")


# -- category and function decided together ---------------------------------------------------------------
def test_pairs_seen_in_training_weigh_one_the_others_a_hundredth(routed):
    cats, fns = routed.classes("category"), routed.classes("function")
    w = routed.pair_weights_
    seen = {("交通秩序", "traffic_police"), ("供暖供热", "town_gov"), ("公共交通", "transport"),
            ("道路设施", "housing")}
    for i, c in enumerate(cats):
        for j, f in enumerate(fns):
            assert w[i, j] == (1.0 if (c, f) in seen else 0.01), (c, f)
    assert routed.routing_summary_["category_function_pairs"] == 4


def test_joint_probabilities_are_the_marginals_of_the_geometric_mean(routed):
    probe = ["隆德县的出租车拒载，还骂乘客", "大武口区的路灯不亮了", "海原县李旺镇的暖气不热"]
    X = routed.transform(probe)
    pc, pf = routed.heads_["category"].predict_proba(X), routed.heads_["function"].predict_proba(X)
    joint = np.sqrt(pc)[:, :, None] * np.sqrt(pf)[:, None, :] * routed.pair_weights_[None]
    joint /= joint.sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(routed.predict_proba(probe, "category"), joint.sum(axis=2), atol=1e-9)
    details = routed.predict_details(probe)
    for i, d in enumerate(details):
        j = routed.classes("function").index(d["routing"]["function"]["label"])
        assert d["routing"]["function"]["score"] == pytest.approx(joint.sum(axis=1)[i, j], abs=1e-6)
        assert d["category"]["score"] == pytest.approx(joint.sum(axis=2)[i].max(), abs=1e-6)
    # one answer whichever way it is asked for
    assert routed.predict(probe)["category"] == [d["category"]["label"] for d in details]
    alone = routed.predict_details(probe, targets=["category"])
    assert [a["category"] for a in alone] == [d["category"] for d in details]


def test_a_confident_category_overrules_an_unsure_incompatible_function(routed, monkeypatch):
    text = "隆德县的出租车拒载，还骂乘客"
    fns = routed.classes("function")
    unsure = np.zeros((1, len(fns)))
    unsure[0, fns.index("housing")], unsure[0, fns.index("transport")] = 0.55, 0.45
    monkeypatch.setattr(routed.heads_["function"], "predict_proba", lambda X: unsure)
    assert routed.predict_proba([text], "category")[0].max() > 0.9  # the category head: 公共交通
    result = routed.predict_one(text)
    assert (result["category"]["label"], result["agency"]["label"]) == ("公共交通", "隆德县交通运输局")
    assert result["routing"]["function"]["label"] == "transport"


def test_a_router_without_pair_weights_decides_the_category_alone(routed, tiny_model, directory):
    old = copy.deepcopy(routed)
    del old.__dict__["pair_weights_"]  # pickled before joint decisions existed
    probe = ["隆德县的出租车拒载，还骂乘客", "海原县李旺镇的暖气不热"]
    np.testing.assert_allclose(old.predict_proba(probe, "category"),
                               old.heads_["category"].predict_proba(old.transform(probe)), atol=1e-9)
    assert old.predict_one(probe[0])["agency"]["label"] == "隆德县交通运输局"
    plain = RoutedClassifier.from_classifier(tiny_model, directory, TEXTS, TARGETS["agency"])
    assert plain.pair_weights_ is None and plain.routing_summary_["category_function_pairs"] == 0
    joint = RoutedClassifier.from_classifier(tiny_model, directory, TEXTS, TARGETS["agency"],
                                             categories=TARGETS["category"])
    np.testing.assert_array_equal(joint.pair_weights_, routed.pair_weights_)
    with pytest.raises(TrainingDataError, match="3 category labels for 12 agency labels"):
        RoutedClassifier.from_classifier(tiny_model, directory, TEXTS, TARGETS["agency"],
                                         categories=TARGETS["category"][:3])


def test_the_county_head_is_calibrated_on_the_cases_that_name_no_place(routed, directory, monkeypatch):
    assert routed.routing_summary_["county_calibration"] is None  # 12 tiny cases: fewer than 20 name no place
    import classifier.routing as routing

    monkeypatch.setattr(routing, "_MIN_UNNAMED", 1)
    texts = TEXTS + ["村里的空气能又坏了", "出租车拒载还骂人", "红绿灯坏了没人管"]
    targets = {"category": TARGETS["category"] + ["供暖供热", "公共交通", "交通秩序"],
               "agency": TARGETS["agency"] + ["海原县李旺镇政府", "同心县交通运输局", "兴庆区交警一大队"]}
    calibrated = RoutedClassifier(tiny_config(), directory=directory).fit(texts, targets)
    calibration = calibrated.routing_summary_["county_calibration"]
    unnamed = sum(calibrated.resolve_place(t).county is None for t in texts)
    assert calibration["unnamed_cases"] == unnamed >= 3
    assert calibration["temperature"] == pytest.approx(calibrated.heads_["county"].temperature_, abs=1e-5)
    assert 0.0 <= calibration["out_of_fold_accuracy"] <= 1.0


# -- place hints --------------------------------------------------------------------------------------------
def test_a_place_hint_decides_when_the_text_names_no_place(routed):
    result = routed.predict_details(["出租车拒载，还骂乘客"], places=["隆德县"])[0]
    assert result["agency"]["label"] == "隆德县交通运输局"
    place = result["routing"]["place"]
    assert (place["source"], place["county"], place["score"]) == ("hint", "隆德县", 1.0)
    assert result["routing"]["reason"] is None
    town = routed.predict_details(["村里的空气能坏了，家里冻得不行"], places=["西吉县兴隆镇"])[0]
    assert town["agency"]["label"] == "西吉县兴隆镇政府" and town["routing"]["place"]["town"] == "兴隆镇"


def test_the_text_wins_over_the_hint_and_the_hint_settles_a_town_of_two_counties(routed):
    named = routed.predict_details(["隆德县的出租车拒载"], places=["同心县"])[0]
    assert named["agency"]["label"] == "隆德县交通运输局"
    assert named["routing"]["place"]["source"] == "gazetteer"
    ambiguous = routed.predict_details(["古城镇的出租车拒载，还骂乘客"], places=["彭阳县"])[0]
    place = ambiguous["routing"]["place"]
    assert (place["source"], place["county"], place["town"]) == ("hint", "彭阳县", "古城镇")
    assert ambiguous["agency"]["label"] == "彭阳县交通运输局"


def test_a_hint_naming_no_known_place_is_reported_and_the_county_model_decides(routed):
    result = routed.predict_details(["出租车拒载，还骂乘客"], places=["北京市朝阳区"])[0]
    assert result["routing"]["place"]["source"] == "model"
    assert result["routing"]["reason"].startswith("the place hint '北京市朝阳区' names no county or town")
    # blank hints are no hints: the same answer as without
    plain = routed.predict_details(["出租车拒载，还骂乘客", "隆德县的出租车拒载"])
    assert routed.predict_details(["出租车拒载，还骂乘客", "隆德县的出租车拒载"], places=["", None]) == plain


def test_bad_place_hints_get_clear_errors(routed, tiny_model):
    from classifier.errors import PlaceHintError

    with pytest.raises(PlaceHintError, match="expected a list of place hints"):
        routed.predict_details(["出租车拒载"], places="隆德县")
    with pytest.raises(PlaceHintError, match="2 place hints for 1 texts"):
        routed.predict_details(["出租车拒载"], places=["隆德县", "同心县"])
    with pytest.raises(PlaceHintError, match="place hint #0 is int"):
        routed.predict_details(["出租车拒载"], places=[3])
    with pytest.raises(PlaceHintError, match="place hint #0 has 201 characters; the limit is 200"):
        routed.predict_details(["出租车拒载"], places=["县" * 201])
    with pytest.raises(PlaceHintError, match="2 place hints for 1 texts"):
        routed.predict_details(["出租车拒载"], targets=["category"], places=["隆德县", "同心县"])
    # a model without routing refuses hints rather than ignoring them; no hint at all is fine
    with pytest.raises(PlaceHintError, match="place hints need a routing model"):
        tiny_model.predict_details(["出租车拒载"], places=["隆德县"])
    assert tiny_model.predict_details(["出租车拒载"], places=[None]) == tiny_model.predict_details(["出租车拒载"])
    # the category alone does not depend on the place
    only = routed.predict_details(["出租车拒载"], targets=["category"], places=["隆德县"])
    assert only == routed.predict_details(["出租车拒载"], targets=["category"])


def test_predict_proba_takes_the_same_place_hints(routed, tiny_model):
    from classifier.errors import PlaceHintError

    texts = ["出租车拒载，还骂乘客"]
    P = routed.predict_proba(texts, "agency", places=["隆德县"])
    result = routed.predict_details(texts, places=["隆德县"])[0]
    assert routed.classes("agency")[int(P[0].argmax())] == result["agency"]["label"] == "隆德县交通运输局"
    assert P[0].max() == pytest.approx(result["agency"]["score"], abs=1e-6)
    np.testing.assert_array_equal(routed.predict_proba(texts, "category", places=["隆德县"]),
                                  routed.predict_proba(texts, "category"))
    with pytest.raises(PlaceHintError, match="place hints need a routing model"):
        tiny_model.predict_proba(texts, "agency", places=["隆德县"])
    with pytest.raises(PlaceHintError, match="2 place hints for 1 texts"):
        routed.predict_proba(texts, "agency", places=["隆德县", None])


def test_a_city_hint_keeps_the_county_guess_inside_that_city(routed):
    # a city-wide hotline sends its city: the county model then chooses among that city's counties only
    yinchuan = ["兴庆区", "金凤区", "西夏区", "永宁县", "贺兰县", "灵武市"]
    result = routed.predict_details(["出租车拒载，还骂乘客"], places=["银川市"])[0]
    routing = result["routing"]
    assert routing["place"]["city"] == "银川市" and routing["place"]["county"] in yinchuan
    assert routing["place"]["source"] == "model"
    assert routing["reason"].startswith("the place hint '银川市' names only a city")
    assert {a["label"] for a in result["agency"]["alternatives"]} <= {f"{c}交通运输局" for c in yinchuan}
    # without the hint the tiny model's county guess is 同心县 (its only taxi cases)
    assert routed.predict_details(["出租车拒载，还骂乘客"])[0]["agency"]["label"] == "同心县交通运输局"
