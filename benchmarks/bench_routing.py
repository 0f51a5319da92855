"""Jurisdiction routing benchmark (issue 6): flat agency head vs the combined (place x function) router.

1. Demo corpus, whole counties held out: for each of several seeded draws of 4 counties (of 22), every case
   whose agency is in those counties is removed from training; the model is trained on the other counties'
   cases (minus a 20 % seeded test split of them) and both paths route: the seen-county test split and the
   held-out counties.  Agency accuracy is also split by whether the case's agency was in the training labels.
2. Qingdao 12345 work orders (no directory): ``RoutedClassifier(directory=None)`` must equal
   ``ComplaintClassifier`` (agency accuracy on the test split).  Skipped when ../shared is absent.
3. The written evaluation cases (``data/ningxia/heldout.csv`` and ``dev.csv``, never trained on): the demo
   model trained on the whole corpus, with category and function decided together (shipped) and each head
   alone.
3b. The final agency's calibration by where the place came from (text, hint, guess, none) on the same files,
   as written and with the true county as a place hint where the text names none: per source the accuracy
   against the mean score, the share flagged, and whether the share routed without review is right at least
   as often as the threshold promises; the no-place share flagged (must be 100 %) and the placed share routed.
4. The same on ``heldout.csv`` with the corpus as it grew (it grew by appending: its first 1,331, 1,731,
   2,131 rows; ``--skip-growth``).
5. Latency of one complaint through ``predict_details``: flat model vs router (median of many calls).

    .venv/bin/python benchmarks/bench_routing.py [--draws 3] [--skip-qingdao] [--json out.json]

Prints a Markdown table for BENCHMARKS.md.  No complaint text is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import ComplaintClassifier  # noqa: E402
from classifier.routing import RoutedClassifier  # noqa: E402
from training.data import read_table  # noqa: E402
from training.demo import DEMO_CORPUS, DEMO_DEV, DEMO_HELDOUT, demo_config, demo_directory  # noqa: E402

QINGDAO = ROOT.parent / "shared" / "data" / "qingdao12345" / "work_orders.csv"


def holdout_counties(draws: int, n_counties: int = 4, seed: int = 0) -> dict:
    directory = demo_directory()
    data = read_table(DEMO_CORPUS).dropna(subset=["text", "agency"]).reset_index(drop=True)
    county = data["agency"].map(lambda a: directory.agencies[a].county if a in directory.agencies else None)
    counties = sorted(county.dropna().unique())
    config = demo_config(test_size=0.0)
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(draws):
        held = sorted(rng.choice(counties, size=n_counties, replace=False))
        unseen = county.isin(held).to_numpy()
        seen_idx = np.flatnonzero(~unseen)
        test_mask = np.zeros(len(data), dtype=bool)
        test_mask[rng.choice(seen_idx, size=len(seen_idx) // 5, replace=False)] = True
        train = data[~unseen & ~test_mask]
        t0 = time.perf_counter()
        model = RoutedClassifier(config, directory=directory).fit(
            train["text"].tolist(), {"category": train["category"].tolist(), "agency": train["agency"].tolist()}
        )
        fit_s = time.perf_counter() - t0
        known = set(train["agency"])
        run = {"held_out": held, "train_rows": len(train), "fit_seconds": round(fit_s, 1), "groups": {}}
        for name, mask in (("seen counties (20% test)", test_mask), ("held-out counties", unseen)):
            part = data[mask]
            texts, truth = part["text"].tolist(), part["agency"].to_numpy()
            flat = model.heads_["agency"].predict(model.transform(texts))
            details = model.predict_details(texts, top_k=3)
            routed = np.array([r["agency"]["label"] for r in details])
            top3 = np.array([t in [a["label"] for a in r["agency"]["alternatives"]] for t, r in zip(truth, details)])
            path = np.array([r["routing"]["path"] for r in details])
            named = np.array([r["routing"]["place"]["source"] == "gazetteer" for r in details])
            review = np.array([r["needs_review"] for r in details])
            seen_agency = np.array([a in known for a in truth])
            run["groups"][name] = _scores(truth, flat, routed, top3, path, seen_agency, named, review)
        runs.append(run)
    return {"rows": len(data), "counties": len(counties), "runs": runs, "summary": _summarize(runs)}


def _scores(truth, flat, routed, top3, path, seen_agency, named, review) -> dict:  # noqa: ANN001
    out = {
        "n": int(len(truth)),
        "flat": float(np.mean(flat == truth)),
        "combined": float(np.mean(routed == truth)),
        "combined_top3": float(np.mean(top3)),
        "directory_path_share": float(np.mean(path == "directory")),
        "combined_on_directory_path": float(np.mean((routed == truth)[path == "directory"]))
        if (path == "directory").any() else None,
    }
    for label, m in (("place_named", named), ("place_inferred", ~named)):
        out[label] = {
            "n": int(m.sum()),
            "flat": float(np.mean((flat == truth)[m])) if m.any() else None,
            "combined": float(np.mean((routed == truth)[m])) if m.any() else None,
            "review": float(np.mean(review[m])) if m.any() else None,
            "combined_unflagged": float(np.mean((routed == truth)[m & ~review])) if (m & ~review).any() else None,
        }
    for label, m in (("agency_seen", seen_agency), ("agency_unseen", ~seen_agency)):
        out[label] = {
            "n": int(m.sum()),
            "flat": float(np.mean((flat == truth)[m])) if m.any() else None,
            "combined": float(np.mean((routed == truth)[m])) if m.any() else None,
        }
    return out


def _summarize(runs: list[dict]) -> dict:
    summary = {}
    for group in runs[0]["groups"]:
        g = [r["groups"][group] for r in runs]
        summary[group] = {
            "n": sum(x["n"] for x in g),
            "flat": _pooled(g, "flat"),
            "combined": _pooled(g, "combined"),
            "combined_top3": _pooled(g, "combined_top3"),
            "directory_path_share": _pooled(g, "directory_path_share"),
            "agency_unseen_n": sum(x["agency_unseen"]["n"] for x in g),
            "place_named_n": sum(x["place_named"]["n"] for x in g),
            "place_named_flat": _pooled([x["place_named"] for x in g], "flat"),
            "place_named_combined": _pooled([x["place_named"] for x in g], "combined"),
            "place_inferred_flat": _pooled([x["place_inferred"] for x in g], "flat"),
            "place_inferred_combined": _pooled([x["place_inferred"] for x in g], "combined"),
            "place_named_review": _pooled([x["place_named"] for x in g], "review"),
            "place_inferred_review": _pooled([x["place_inferred"] for x in g], "review"),
            "agency_unseen_flat": _pooled([x["agency_unseen"] for x in g], "flat"),
            "agency_unseen_combined": _pooled([x["agency_unseen"] for x in g], "combined"),
            "agency_seen_flat": _pooled([x["agency_seen"] for x in g], "flat"),
            "agency_seen_combined": _pooled([x["agency_seen"] for x in g], "combined"),
        }
    return summary


def _pooled(groups: list[dict], key: str) -> float | None:
    pairs = [(g[key], g["n"]) for g in groups if g.get(key) is not None and g["n"]]
    if not pairs:
        return None
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


def demo_router() -> tuple[RoutedClassifier, object]:
    """The demo model trained on the whole corpus (as ``hotline demo`` trains it), and the corpus."""
    corpus = read_table(DEMO_CORPUS)
    model = RoutedClassifier(demo_config(test_size=0.0), directory=demo_directory()).fit(
        corpus["text"].tolist(), {"category": corpus["category"].tolist(), "agency": corpus["agency"].tolist()})
    return model, corpus


def place_sources(model: RoutedClassifier, threshold: float = 0.5) -> dict:
    """The final agency's calibration by where the place came from, on the written evaluation files: as
    written (a place named in the text, or guessed by the county model), and with the true county sent as a
    place hint where the text names none (an export's district field, a county hotline's line)."""
    from training.report_routing import place_calibration

    directory = demo_directory()
    out: dict = {"threshold": threshold, "files": {}}
    for path in (DEMO_HELDOUT, DEMO_DEV):
        data = read_table(path)
        texts, truth = data["text"].tolist(), data["agency"].to_numpy()
        unnamed = [model.resolve_place(t).county is None for t in texts]
        district = [directory.agencies[a].county if u else None for a, u in zip(truth, unnamed)]
        runs = {}
        for name, hints in (("as written", None), ("district hint where the text names no place", district)):
            details = model.predict_details(texts, top_k=1, targets=["agency"], places=hints,
                                            thresholds={"agency": threshold})
            source = np.array([d["routing"]["place"]["source"] for d in details], dtype=object)
            right = np.array([d["agency"]["label"] for d in details]) == truth
            score = np.array([d["agency"]["score"] for d in details])
            flagged = np.array([d["needs_review"] for d in details])
            table = place_calibration(source, right, score, flagged, threshold)
            placed = np.isin(source, ["gazetteer", "hint"])
            rows = [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()}  # NaN: none
                    for r in table.to_dict(orient="records")]
            runs[name] = {
                "sources": rows,
                "no_place_flagged": float(flagged[~placed].mean()) if (~placed).any() else None,
                "no_place_cases": int((~placed).sum()),
                "placed_cases": int(placed.sum()),
                "placed_routed_without_review": float((~flagged[placed]).mean()) if placed.any() else None,
                "routed_accuracy": float(right[~flagged].mean()) if (~flagged).any() else None,
            }
        out["files"][path.name] = runs
    return out


def written_heldout(model: RoutedClassifier | None = None, corpus: object = None) -> dict:
    """The demo model (whole corpus) on the written evaluation files (``dev.csv``: looked at while the corpus
    grew; ``heldout.csv``: never), shipped and with the category head deciding alone (no pair weights)."""
    directory = demo_directory()
    if model is None or corpus is None:
        model, corpus = demo_router()
    alone = copy.copy(model)
    alone.pair_weights_ = None
    seen = {(c, directory.function_of(a)) for c, a in zip(corpus["category"], corpus["agency"])}
    out: dict = {"corpus_rows": len(corpus), "files": {}}
    for path in (DEMO_HELDOUT, DEMO_DEV):
        data = read_table(path)
        texts, cats, agencies = data["text"].tolist(), data["category"].to_numpy(), data["agency"].to_numpy()
        named = np.array([model.resolve_place(t).county is not None for t in texts])
        result: dict = {"n": len(texts), "named": int(named.sum()), "variants": {}}
        for name, m in (("category and function together (shipped)", model), ("each head alone", alone)):
            details = m.predict_details(texts)
            cat_ok = np.array([d["category"]["label"] for d in details]) == cats
            ag_ok = np.array([d["agency"]["label"] for d in details]) == agencies
            review = np.array([d["needs_review"] for d in details])
            pairs = [(d["category"]["label"], directory.function_of(d["agency"]["label"])) for d in details]
            result["variants"][name] = {
                "category": float(cat_ok.mean()),
                "agency": float(ag_ok.mean()),
                "agency_named": float(ag_ok[named].mean()),
                "agency_unnamed": float(ag_ok[~named].mean()),
                "review": float(review.mean()),
                "agency_unflagged": float(ag_ok[~review].mean()),
                "pairs_seen": float(np.mean([p in seen for p in pairs])),
            }
        out["files"][path.name] = result
    return out


# the corpus grew by appending: its first rows are the corpus as it was at each of these sizes
CORPUS_SIZES = (1331, 1731, 2131, 2531)


def corpus_growth() -> list[dict]:
    """The demo model trained on the corpus as it was at each size (its first rows), on ``heldout.csv``."""
    directory = demo_directory()
    corpus = read_table(DEMO_CORPUS)
    held = read_table(DEMO_HELDOUT)
    texts = held["text"].tolist()
    out = []
    for size in (n for n in CORPUS_SIZES if n <= len(corpus)):
        part = corpus.iloc[:size]
        model = RoutedClassifier(demo_config(test_size=0.0), directory=directory).fit(
            part["text"].tolist(), {"category": part["category"].tolist(), "agency": part["agency"].tolist()})
        details = model.predict_details(texts)
        named = np.array([d["routing"]["place"]["source"] == "gazetteer" for d in details])
        cat_ok = np.array([d["category"]["label"] for d in details]) == held["category"].to_numpy()
        ag_ok = np.array([d["agency"]["label"] for d in details]) == held["agency"].to_numpy()
        review = np.array([d["needs_review"] for d in details])
        out.append({"corpus_rows": size, "category": float(cat_ok.mean()), "agency_named": float(ag_ok[named].mean()),
                    "agency_unflagged": float(ag_ok[~review].mean()), "review": float(review.mean())})
    return out


def qingdao() -> dict | None:
    if not QINGDAO.exists():
        print(f"skipping Qingdao: {QINGDAO} not present", file=sys.stderr)
        return None
    data = read_table(QINGDAO)
    data = data[data["agency"].notna() & (data["agency"].astype(str).str.strip() != "")]
    train, test = data[data["split"] == "train"], data[data["split"] == "test"]
    config = TrainingConfig(min_class_count=1, test_size=0.0)
    out = {"train_rows": len(train), "test_rows": len(test)}
    preds = {}
    for name, cls in (("ComplaintClassifier", ComplaintClassifier), ("RoutedClassifier(directory=None)",
                                                                       RoutedClassifier)):
        model = cls(config).fit(train["text"].astype(str).tolist(), {"agency": train["agency"].astype(str).tolist()})
        preds[name] = model.predict(test["text"].astype(str).tolist())["agency"]
        out[name] = float(np.mean(np.array(preds[name]) == test["agency"].astype(str).to_numpy()))
    a, b = preds.values()
    out["identical_predictions"] = a == b
    return out


def latency(n: int = 300) -> dict:
    from training.demo import SAMPLE_COMPLAINTS, train_demo

    routed = train_demo()
    routed.warm_up()
    out = {}
    # the flat path is ComplaintClassifier.predict_details on the same fitted object: same features and heads
    for name, predict in (("flat", lambda t: ComplaintClassifier.predict_details(routed, t)),
                          ("router", routed.predict_details)):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            predict([SAMPLE_COMPLAINTS[i % 4]])
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times) * 1000
    resolver = routed.resolver_
    t0 = time.perf_counter()
    for i in range(n * 10):
        resolver.resolve(SAMPLE_COMPLAINTS[i % 4])
    out["resolve_only"] = (time.perf_counter() - t0) / (n * 10) * 1000
    out["ratio"] = out["router"] / out["flat"]
    return out


def versions() -> str:
    import jieba
    import sklearn

    return (f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
            f"jieba {jieba.__version__}")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(res: dict) -> str:
    h = res["holdout"]
    lines = [
        f"Demo corpus: {h['rows']} cases, {h['counties']} counties; {len(h['runs'])} draws of 4 held-out counties "
        f"(seed 0): {'; '.join(', '.join(r['held_out']) for r in h['runs'])}. Pooled over draws:",
        "",
        "| cases | n | flat agency acc | combined agency acc | combined top-3 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for group, s in h["summary"].items():
        lines.append(f"| {group} | {s['n']} | {_pct(s['flat'])} | {_pct(s['combined'])} | "
                     f"{_pct(s['combined_top3'])} |")
    lines += ["", "| place of the case | n | flat | combined | flagged needs_review |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for group, s in h["summary"].items():
        lines.append(f"| named in the text, resolved by the gazetteer ({group}) | {s['place_named_n']} | "
                     f"{_pct(s['place_named_flat'])} | {_pct(s['place_named_combined'])} | "
                     f"{_pct(s['place_named_review'])} |")
        lines.append(f"| not named, county inferred by the county model ({group}) | "
                     f"{s['n'] - s['place_named_n']} | {_pct(s['place_inferred_flat'])} | "
                     f"{_pct(s['place_inferred_combined'])} | {_pct(s['place_inferred_review'])} |")
    lines += ["", "| agency of the case | n | flat | combined |", "| --- | ---: | ---: | ---: |"]
    for group, s in h["summary"].items():
        lines.append(f"| seen in training ({group}) | {s['n'] - s['agency_unseen_n']} | "
                     f"{_pct(s['agency_seen_flat'])} | {_pct(s['agency_seen_combined'])} |")
        lines.append(f"| never seen in training ({group}) | {s['agency_unseen_n']} | "
                     f"{_pct(s['agency_unseen_flat'])} | {_pct(s['agency_unseen_combined'])} |")
    w = res.get("heldout")
    if w:
        lines += ["", f"Written evaluation cases (the model trained on all {w['corpus_rows']} corpus cases; "
                      "`heldout.csv` was never looked at while building the corpus, `dev.csv` was):", "",
                  "| file | decision | cases (place named) | category acc | agency acc | agency acc, place named | "
                  "agency acc, not named | flagged needs_review | agency acc, not flagged | category and agency's "
                  "function a pair seen in training |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for file, r in w["files"].items():
            for name, v in r["variants"].items():
                lines.append(f"| {file} | {name} | {r['n']} ({r['named']}) | {v['category']:.3f} | {v['agency']:.3f} | "
                             f"{v['agency_named']:.3f} | {v['agency_unnamed']:.3f} | {v['review']:.3f} | "
                             f"{v['agency_unflagged']:.3f} | {v['pairs_seen']:.3f} |")
    c = res.get("place_sources")
    if c:
        lines += ["", f"The final agency by where its place came from (review threshold {c['threshold']}; a place the "
                      "text and the hint do not decide always asks for review): cases, accuracy against the mean "
                      "score, and the share routed without review with its accuracy, which must reach the "
                      "threshold:", "",
                  "| file | place hints | place from | cases | accuracy | mean score | flagged needs_review | "
                  "routed without review | their accuracy | ≥ threshold |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for file, runs in c["files"].items():
            for name, r in runs.items():
                for row in r["sources"]:
                    if not row["cases"]:
                        continue
                    meets = {None: "–", True: "yes", False: "**no**"}[row["meets_threshold"]]
                    lines.append(f"| {file} | {name} | {row['place']} ({row['meaning']}) | {row['cases']} | "
                                 f"{_pct(row['accuracy'])} | {_pct(row['mean_score'])} | "
                                 f"{_pct(row['flagged_for_review'])} | {row['routed_without_review']} | "
                                 f"{_pct(row['accuracy_not_flagged'])} | {meets} |")
        lines += ["", "| file | place hints | no place: cases, flagged | placed: cases, routed without review | "
                      "accuracy of all routed without review |", "| --- | --- | ---: | ---: | ---: |"]
        for file, runs in c["files"].items():
            for name, r in runs.items():
                flagged = "–" if r["no_place_flagged"] is None else f"{r['no_place_flagged']:.1%}"
                lines.append(f"| {file} | {name} | {r['no_place_cases']}, {flagged} | {r['placed_cases']}, "
                             f"{r['placed_routed_without_review']:.1%} | {_pct(r['routed_accuracy'])} |")
    g = res.get("growth")
    if g:
        lines += ["", "The same model code trained on the corpus as it grew (its first rows), on `heldout.csv`:", "",
                  "| corpus cases | category acc | agency acc, place named | agency acc, not flagged | flagged "
                  "needs_review |", "| ---: | ---: | ---: | ---: | ---: |"]
        for r in g:
            lines.append(f"| {r['corpus_rows']:,} | {r['category']:.3f} | {r['agency_named']:.3f} | "
                         f"{r['agency_unflagged']:.3f} | {r['review']:.3f} |")
    q = res.get("qingdao")
    if q:
        lines += ["", f"Qingdao 12345 (no directory; agency, train {q['train_rows']} / test {q['test_rows']}): "
                      f"ComplaintClassifier {q['ComplaintClassifier']:.4f}, RoutedClassifier(directory=None) "
                      f"{q['RoutedClassifier(directory=None)']:.4f}; identical predictions: "
                      f"{q['identical_predictions']}."]
    lat = res.get("latency")
    if lat:
        lines += ["", f"One complaint through `predict_details` (median of 300, demo model): flat "
                      f"{lat['flat']:.2f} ms, router {lat['router']:.2f} ms (x{lat['ratio']:.2f}); place "
                      f"resolution alone {lat['resolve_only'] * 1000:.0f} µs."]
    lines += ["", f"Libraries: {res['versions']}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--skip-qingdao", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-growth", action="store_true", help="skip retraining on the corpus as it grew")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model, corpus = demo_router()
    res: dict = {"versions": versions(), "holdout": holdout_counties(args.draws),
                 "heldout": written_heldout(model, corpus), "place_sources": place_sources(model)}
    if not args.skip_growth:
        res["growth"] = corpus_growth()
    if not args.skip_qingdao:
        res["qingdao"] = qingdao()
    if not args.skip_latency:
        res["latency"] = latency()
    if args.json:
        args.json.write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
