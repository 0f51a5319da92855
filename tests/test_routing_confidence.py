"""A routed agency's score is the probability that it is right (issue 15, section 1).

The demo router's score may never exceed the confidence in its place times the confidence in its function; a
place guessed by the county model asks for review; the ``routing`` field describes the path that produced the
answer.  The four complaints are the issue's; each test failed before the fix.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from classifier.model import prediction_record
from classifier.routing import RoutedClassifier
from tests.conftest import TINY_CASES, tiny_config
from training.cli import main
from training.data import read_table
from training.demo import DEMO_HELDOUT, demo_directory

# the examples: no place in the text, no hint
UNPLACED = ["路灯坏了", "自来水停水两天了", "我家暖气不热", "小区门口路灯坏了一个月没人修"]


def _consistent(result: dict, directory) -> None:  # noqa: ANN001
    """The routing record describes the answer: its place is the agency's county, its function the agency's
    function, and the agency's score is at most their product."""
    agency, routing = result["agency"], result["routing"]
    if routing["path"] != "directory":
        assert routing["place"]["source"] != "model", routing  # a guess that produced no answer is not shown
        return
    a = directory.agencies[agency["label"]]
    place, fn = routing["place"], routing["function"]
    assert place["county"] == a.county, (agency["label"], place)
    if a.town is not None and place["town"] is not None:
        assert place["town"] == a.town
    assert fn["label"] == a.function
    assert agency["score"] <= place["score"] * fn["score"] + 1e-4, (agency, place, fn)


@pytest.mark.parametrize("text", UNPLACED)
def test_an_unplaced_complaint_scores_at_most_place_times_function_and_asks_for_review(demo_model, text):
    result = demo_model.predict_details([text])[0]
    assert result["routing"]["place"]["source"] in ("model", "none")
    _consistent(result, demo_directory())
    assert result["needs_review"] is True
    assert result["agency"]["review_reason"].startswith("the text and the hint do not decide the county")


def test_the_routing_record_names_the_county_of_the_answer(demo_model):
    # before: routing.place said 海原县 while the agency was 青铜峡市住建局
    result = demo_model.predict_details(["小区门口路灯坏了一个月没人修"])[0]
    county = demo_directory().agencies[result["agency"]["label"]].county
    assert result["routing"]["path"] == "directory"
    assert result["routing"]["place"]["county"] == county


def test_predict_json_flags_the_agency_of_a_guessed_place(demo_store, capsys):
    assert main(["predict", "--store", str(demo_store.path), "--json", "路灯坏了"]) == 0
    record = json.loads(capsys.readouterr().out)
    agency = record["targets"]["agency"]
    assert agency["needs_review"] is True and record["needs_review"] is True
    place, fn = record["routing"]["place"], record["routing"]["function"]
    assert agency["score"] <= place["score"] * fn["score"] + 1e-4
    # the human-readable line says why, not that a score is under its threshold
    assert main(["predict", "--store", str(demo_store.path), "路灯坏了"]) == 0
    assert "needs review: the text and the hint do not decide the county" in capsys.readouterr().out


def test_prediction_record_keeps_a_review_the_model_requires():
    result = {"agency": {"label": "a", "score": 0.9, "alternatives": [], "review_reason": "the place was guessed"},
              "needs_review": True}
    record = prediction_record(result, ["agency"], thresholds={"agency": 0.5})
    assert record["targets"]["agency"]["needs_review"] is True
    plain = prediction_record({"agency": {"label": "a", "score": 0.9, "alternatives": []}, "needs_review": False},
                              ["agency"], thresholds={"agency": 0.5})
    assert plain["targets"]["agency"]["needs_review"] is False


def test_on_the_written_held_out_cases(demo_model):
    # every complaint that names no place (and sends no hint) is flagged; those that name one mostly go out
    held = read_table(DEMO_HELDOUT)
    details = demo_model.predict_details(held["text"].tolist())
    directory = demo_directory()
    named = [d for d in details if d["routing"]["place"]["source"] == "gazetteer"]
    unnamed = [d for d in details if d["routing"]["place"]["source"] != "gazetteer"]
    assert len(unnamed) >= 25 and len(named) >= 250
    assert all(d["needs_review"] for d in unnamed)
    assert sum(not d["needs_review"] for d in named) >= 0.9 * len(named)
    for d in details:
        _consistent(d, directory)


# -- the same rules on the tiny router ---------------------------------------------------------------------
TEXTS = [t for t, _, _ in TINY_CASES]
TARGETS = {"category": [c for _, c, _ in TINY_CASES], "agency": [a for _, _, a in TINY_CASES]}


@pytest.fixture(scope="module")
def routed() -> RoutedClassifier:
    return RoutedClassifier(tiny_config(), directory=demo_directory()).fit(TEXTS, TARGETS)


def test_a_place_named_against_another_caps_both_counties(routed):
    # 隆德县 twice, 同心县 once: the place's confidence is 2/3, the other county's 1/3
    result = routed.predict_details(["隆德县的出租车拒载，司机说他是同心县和隆德县的"])[0]
    place, fn = result["routing"]["place"], result["routing"]["function"]
    assert (place["county"], place["source"], place["score"]) == ("隆德县", "gazetteer", pytest.approx(2 / 3, abs=1e-3))
    alternatives = {a["label"]: a["score"] for a in result["agency"]["alternatives"]}
    assert alternatives["隆德县交通运输局"] <= 2 / 3 * fn["score"] + 1e-4
    assert alternatives["同心县交通运输局"] <= 1 / 3 * fn["score"] + 1e-4  # the flat model's favourite, capped
    assert "review_reason" not in result["agency"]  # the text named it: the score decides


def test_every_agency_of_the_directory_is_capped_and_a_row_sums_to_at_most_one(routed):
    texts = ["隆德县的出租车拒载", "同心县的出租车拒载，司机是隆德县的", "村里的空气能坏了", "银川市的出租车拒载"]
    P = routed.predict_proba(texts, "agency")
    assert np.all(P.sum(axis=1) <= 1 + 1e-9)
    assert P[0].sum() == pytest.approx(1.0, abs=1e-6)  # a place named alone: nothing to cap
    details = routed.predict_details(texts, top_k=1)
    for d in details:
        _consistent(d, demo_directory())


def test_counties_left_open_by_the_text_are_a_guess_and_ask_for_review(routed):
    result = routed.predict_details(["同心县的出租车拒载，司机是隆德县的"])[0]
    routing = result["routing"]
    assert routing["place"]["source"] == "model" and routing["place"]["county"] in ("同心县", "隆德县")
    assert routing["reason"] == "the text and the hint leave the place open; the county model chose among its counties"
    assert result["needs_review"] is True and "county model's guess" in result["agency"]["review_reason"]


def test_a_hint_places_the_case_and_a_guess_or_no_place_asks_for_review(routed):
    hinted = routed.predict_details(["出租车拒载，还骂乘客"], places=["隆德县"])[0]
    assert hinted["routing"]["place"]["source"] == "hint" and hinted["needs_review"] is False
    guessed = routed.predict_details(["出租车拒载，还骂乘客"])[0]
    assert guessed["routing"]["place"]["source"] == "model" and guessed["needs_review"] is True
    # even a threshold of 0 does not send a guessed place out without review
    zero = routed.predict_details(["出租车拒载，还骂乘客"], thresholds={"agency": 0.0, "category": 0.0})[0]
    assert zero["needs_review"] is True
    no_county = copy.deepcopy(routed)
    del no_county.heads_["county"]
    flat = no_county.predict_details(["村里的空气能坏了，家里冻得不行"])[0]
    assert (flat["routing"]["path"], flat["routing"]["place"]["source"]) == ("flat", "none")
    assert flat["agency"]["review_reason"] == ("the text and the hint do not decide the county; the flat agency "
                                               "model answered")
    assert flat["needs_review"] is True


# -- trusting county-model guesses only after a check on held-out cases -----------------------------------
TAXI = [f"出租车拒载，还骂乘客，这是第{i}次了" for i in range(20)]
HEAT = [f"空气能坏了{i}天，家里冻得不行" for i in range(20)]


def test_guesses_right_on_held_out_cases_are_trusted_at_the_checked_threshold(routed):
    model = copy.deepcopy(routed)
    texts = TAXI + HEAT + ["隆德县的出租车拒载"]  # a named place is not a guess: not counted
    agencies = ["同心县交通运输局"] * 20 + ["海原县李旺镇政府"] * 20 + ["隆德县交通运输局"]
    check = model.check_place_guesses(texts, agencies, threshold=0.5)
    assert (check["guessed"], check["routed"], check["right"], check["trusted"]) == (40, 40, 40, True)
    assert check["accuracy"] == 1.0 and 0.9 < check["accuracy_low"] < 1.0
    assert model.routing_summary_["place_guess_check"] == check == model.place_guess_check_
    guessed = model.predict_details(["出租车拒载，还骂乘客"])[0]
    assert guessed["routing"]["place"]["source"] == "model"
    assert guessed["needs_review"] is False and "review_reason" not in guessed["agency"]
    # trust holds for the threshold it was checked at and above, not below
    lower = model.predict_details(["出租车拒载，还骂乘客"], thresholds={"agency": 0.3})[0]
    assert "county model's guess" in lower["agency"]["review_reason"]
    assert "review_reason" not in routed.predict_details(["隆德县的出租车拒载"])[0]["agency"]


def test_guesses_wrong_or_too_few_stay_under_review(routed):
    model = copy.deepcopy(routed)
    wrong = model.check_place_guesses(TAXI + HEAT, ["隆德县交通运输局"] * 40)
    assert (wrong["routed"], wrong["right"], wrong["trusted"]) == (40, 0, False)
    assert "under the threshold" in wrong["reason"]
    few = model.check_place_guesses(TAXI[:10], ["同心县交通运输局"] * 10)
    assert (few["routed"], few["trusted"]) == (10, False) and "at least 30 are needed" in few["reason"]
    assert model.predict_details(["出租车拒载，还骂乘客"])[0]["needs_review"] is True
    # a refit forgets the check: it was of another model
    model.check_place_guesses(TAXI + HEAT, ["同心县交通运输局"] * 20 + ["海原县李旺镇政府"] * 20)
    assert model.place_guess_check_["trusted"] is True
    model.fit(TEXTS, TARGETS)
    assert model.place_guess_check_ is None and model.routing_summary_["place_guess_check"] is None


def test_checking_guesses_refuses_bad_input(routed, tiny_model):
    from classifier.errors import ComplaintInputError, TrainingDataError
    from training.place_guesses import check_place_guesses

    with pytest.raises(TrainingDataError, match=r"expected one agency label per text \(2\), got 1"):
        routed.check_place_guesses(TAXI[:2], ["同心县交通运输局"])
    with pytest.raises(ComplaintInputError, match=r"threshold must be a probability in \(0, 1\], got 1.5"):
        copy.deepcopy(routed).check_place_guesses(TAXI[:2], ["a", "b"], threshold=1.5)
    with pytest.raises(TrainingDataError, match="needs a routing model"):
        check_place_guesses(tiny_model, pd.DataFrame({"text": TAXI, "agency": ["x"] * 20}), "text", "agency")
    with pytest.raises(TrainingDataError, match=r"column\(s\) \['承办单位'\] not in the data"):
        check_place_guesses(routed, pd.DataFrame({"text": TAXI}), "text", "承办单位")


def test_cli_check_guesses_on_the_written_held_out_cases(demo_store, capsys, tmp_path):
    # heldout.csv: 31 cases name no place and the county model gets ~10 % of them: no trust
    args = ["check-guesses", "--data", str(DEMO_HELDOUT), "--text", "text", "--agency", "agency", "--store",
            str(demo_store.path)]
    assert main([*args, "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["guessed"] >= 25 and check["trusted"] is False and check["saved_version"] is None
    assert check["checked_version"] == demo_store.current()
    # a district column as place hints: no case is left to a guess
    held = read_table(DEMO_HELDOUT)
    agencies = demo_store.load().model.directory_.agencies
    held["区县"] = [agencies[a].county for a in held["agency"]]
    with_district = tmp_path / "with_district.csv"
    held.to_csv(with_district, index=False)
    assert main(["check-guesses", "--data", str(with_district), "--text", "text", "--agency", "agency",
                 "--place-column", "区县", "--model", "current", "--store", str(demo_store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["guessed"] == 0
    assert main([*args, "--model", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([*args, "--promote"]) == 2
    assert "--promote needs --save" in capsys.readouterr().err
    # --save writes the checked model as a new version, its check in the manifest, not made current
    import shutil

    store_copy = tmp_path / "store"
    shutil.copytree(demo_store.path, store_copy)
    from classifier.store import ModelStore

    store = ModelStore(store_copy)
    before = set(store.versions())
    assert main([*args[:-1], str(store_copy), "--save"]) == 0
    out = capsys.readouterr().out
    assert "guessed places keep asking for review" in out and "saved the checked model as version" in out
    (newest,) = set(store.versions()) - before
    saved = store.load(newest)
    assert saved.manifest["data"]["directory"]["place_guess_check"]["trusted"] is False
    assert saved.model.place_guess_check_["guessed"] == check["guessed"]
    assert store.current() != newest


# -- the confusion report: calibration by where the place came from ---------------------------------------
def test_the_report_measures_the_routed_share_against_its_threshold_per_place_source(demo_store, demo_model):
    from training.report import evaluate

    held = read_table(DEMO_HELDOUT)
    report = evaluate(demo_store.load(), held, targets={"category": "category", "agency": "agency"}, oof_folds=0)
    t = report.targets["agency"]
    places = t.routing_places.set_index("place")
    details = demo_model.predict_details(held["text"].tolist(), targets=["agency"])
    source = np.array([d["routing"]["place"]["source"] for d in details])
    right = np.array([d["agency"]["label"] for d in details]) == held["agency"].to_numpy()
    score = np.array([d["agency"]["score"] for d in details])
    review = np.array([d["needs_review"] for d in details])
    for name in ("gazetteer", "model"):
        m = source == name
        row = places.loc[name]
        assert row["cases"] == m.sum() and row["mean_score"] == pytest.approx(score[m].mean(), abs=1e-5)
        assert row["flagged_for_review"] == pytest.approx(review[m].mean())
        assert row["routed_without_review"] == (m & ~review).sum()
        assert row["threshold"] == 0.5
    # every guessed place flagged: nothing routed on a guess; named places routed and right as often as promised
    assert places.loc["model", "flagged_for_review"] == 1.0 and places.loc["model", "routed_without_review"] == 0
    assert places.loc["model", "meets_threshold"] is None
    named = source == "gazetteer"
    assert places.loc["gazetteer", "accuracy_not_flagged"] == pytest.approx(right[named & ~review].mean())
    assert places.loc["gazetteer", "meets_threshold"] is True
    # the review table and the operating points count the reviews the model requires whatever the score
    sides = t.review.set_index("side")
    assert sides["cases"].tolist() == [int(review.sum()), int((~review).sum())]
    assert sides.index[0] == "needs review (score < threshold or required by the model)"
    points = t.operating_points.set_index("threshold")
    assert points.loc[0.3, "routed_directly"] == pytest.approx(((score >= 0.3) & ~(source == "model")).mean())
    page = report.to_html()
    assert "meets_threshold" in page and "hotline check-guesses" in page
    assert "county-model guesses: not checked on held-out cases" in report.model_card()
