"""A small decision log built directly (``DecisionLog`` + ``Decision`` / ``Correction``) and the numbers counted
by hand from the same lists, for the tests of the live report and the feedback commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from live.log import SOURCE_RANK, Correction, Decision, DecisionLog, TargetDecision

CATEGORIES = ["交通秩序", "道路设施", "公共交通", "供暖供热"]
AGENCIES = ["兴庆区交警一大队", "大武口区住建局", "同心县交通运输局", "海原县李旺镇政府"]
KNOWN = {"category": set(CATEGORIES), "agency": set(AGENCIES)}
NEW_AGENCY = "新成立的市数据局"
V1, V2 = "20261101-000000.000-aaaaaa", "20261115-000000.000-bbbbbb"
SINCE = datetime(2026, 11, 2, tzinfo=UTC)   # a Monday
UNTIL = datetime(2026, 11, 30, tzinfo=UTC)  # four whole weeks later


@dataclass
class Scenario:
    decisions: list[Decision]
    corrections: list[Correction]


def scenario() -> Scenario:
    """56 decisions over four weeks (two a day; v1 the first two weeks, v2 the last two), a few before and
    after the period, and corrections for most of them: confirmations, changes by every source, a new agency,
    and one case corrected twice (a dispatcher, then an audit that wins)."""
    decisions: list[Decision] = []
    corrections: list[Correction] = []
    for i in range(60):
        day = SINCE + timedelta(days=i // 2 - 1, hours=8 + 6 * (i % 2))  # i 0-1 the day before, 58-59 after
        version = V1 if day < SINCE + timedelta(days=14) else V2
        c, a = i % 4, (i * 3) % 4
        review_c, review_a = i % 5 == 0, i % 3 == 0
        decisions.append(Decision(
            case_id=f"C{i:03d}", request_id=f"r{i}", model_version=version, needs_review=review_c or review_a,
            labels=(TargetDecision("category", CATEGORIES[c], 0.4 if review_c else 0.9, review_c),
                    TargetDecision("agency", AGENCIES[a], 0.3 if review_a else 0.8, review_a)),
            created_at=day, n_tokens=20 if i % 4 == 0 else None, n_unseen=i % 3 if i % 4 == 0 else None))
        if i % 7 == 6:
            continue  # nobody confirmed or corrected these
        source = ("dispatcher", "agency_return", "audit")[i % 3]
        final_c = CATEGORIES[c] if i % 6 else CATEGORIES[(c + 1) % 4]
        final_a = NEW_AGENCY if i % 11 == 3 else AGENCIES[a] if i % 4 else AGENCIES[(a + 2) % 4]
        labels = {"agency": final_a} if i % 8 == 1 else {"category": final_c, "agency": final_a}
        corrections.append(Correction(case_id=f"C{i:03d}", labels=labels, source=source,
                                      corrected_at=day + timedelta(hours=1)))
    # case C010: an agency returned it naming one agency, an audit two hours later another (the audit is final)
    corrections.append(Correction(case_id="C010", labels={"agency": AGENCIES[0]}, source="audit",
                                  corrected_at=decisions[10].created_at + timedelta(hours=3)))
    return Scenario(decisions, corrections)


def fill(decision_log: DecisionLog, s: Scenario) -> None:
    decision_log.write_decisions(s.decisions)
    results = decision_log.add_corrections(s.corrections, KNOWN, now=UNTIL + timedelta(days=1))
    assert not [r for r in results if isinstance(r, Exception)]


def finals(corrections: Iterable[Correction]) -> dict[tuple[str, str], tuple[str, str]]:
    """(case, target) -> (final label, source): the latest correction, an audit before an agency's return before
    the dispatcher at the same time."""
    best: dict[tuple[str, str], tuple[Any, ...]] = {}
    for c in corrections:
        for target, label in c.labels.items():
            key = (c.case_id, target)
            rank = (c.corrected_at, SOURCE_RANK[c.source])
            if key not in best or rank > best[key][0]:
                best[key] = (rank, label, c.source)
    return {k: (v[1], v[2]) for k, v in best.items()}


def direct_counts(s: Scenario, target: str, since: datetime = SINCE, until: datetime = UNTIL) -> dict[str, Any]:
    """The live numbers of one target over ``[since, until)``, counted from the lists."""
    final = finals(s.corrections)
    n = review = labeled = right = auto_labeled = auto_right = new = 0
    for d in s.decisions:
        if not since <= d.created_at < until:
            continue
        td = next(t for t in d.labels if t.target == target)
        n += 1
        review += td.needs_review
        if (d.case_id, target) not in final:
            continue
        truth, _ = final[(d.case_id, target)]
        labeled += 1
        right += truth == td.label
        auto_labeled += not td.needs_review
        auto_right += truth == td.label and not td.needs_review
        new += truth not in KNOWN[target]
    return {"predictions": n, "review": review, "labeled": labeled, "right": right, "auto_labeled": auto_labeled,
            "auto_right": auto_right, "new": new, "accuracy": right / labeled if labeled else None,
            "auto_accuracy": auto_right / auto_labeled if auto_labeled else None,
            "review_rate": review / n if n else None}


def write_old_decision(engine: Any) -> None:
    """One decision (case A-1, 2026-11-01 08:00 UTC, version v0) and its category prediction written by hand
    into a log at an old schema revision, as that schema's writer left them."""
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO decisions (case_id, request_id, created_at, model_version, needs_review) "
                             "VALUES ('A-1', 'r', '2026-11-01 08:00:00.000000', 'v0', 0)")
        conn.exec_driver_sql("INSERT INTO predictions (decision_id, case_id, created_at, model_version, target, "
                             "label, score, needs_review) VALUES (1, 'A-1', '2026-11-01 08:00:00.000000', 'v0', "
                             "'category', '交通秩序', 0.9, 0)")
