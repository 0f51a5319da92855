"""notebooks/retrain.ipynb runs top to bottom (nbclient, the venv's python3 kernel) with its parameters set the
way papermill sets them (a cell injected after the one tagged "parameters"): on the demo, and on a second,
non-demo export (Qingdao-shaped: a GBK CSV with Chinese headers, a date column, agencies only on forwarded
cases, a third target with a blank category on some rows).  Its outputs say what happened: which settings, which
cases were held out, that neither model had seen them, the verdict and the promotion it decided, a learning
curve; the inline report is the summary with a link, and the executed notebook stays small."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classifier.store import ModelStore
from tests.conftest import SHARED_DATA
from training.demo import DEMO_CORPUS, DEMO_HELDOUT

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "retrain.ipynb"
MAX_SAVED_BYTES = 300_000  # the executed notebook (it was 1.27 MB with the whole report inline)


def _text(cell) -> str:  # noqa: ANN001
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def _cell(code: list, marker: str):  # noqa: ANN202
    """The code cell whose source contains ``marker``."""
    return next(c for c in code if marker in c.source)


def run_notebook(params: dict, tmp_path: Path):  # noqa: ANN201
    """Execute the notebook with ``params`` injected after its parameters cell, as papermill does."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    out = "\n".join(_text(c) for c in code)
    html = [o["data"]["text/html"] for c in code for o in c.outputs if o.get("output_type") == "execute_result"
            and "text/html" in o.get("data", {})]
    return nb, code, out, html, len(nbformat.writes(nb).encode("utf-8"))


def test_committed_notebook_has_no_outputs_and_a_parameters_cell():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("EXPORT", "TEXT", "TARGETS", "NEW_CASES", "DATE", "STORE", "CONFIG", "CANDIDATE", "DIRECTORY",
                 "REPORT_DIR", "CURVE_FRACTIONS"):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name


def _common_checks(out: str, html: list[str], size: int, store: ModelStore, before: str, report_dir: Path) -> str:
    candidate = re.search(r"candidate version: (\S+) \(saved, not current\)", out).group(1)
    assert candidate in store.versions() and before in store.versions()
    # the inline report is the first screen with a link to the saved report, not the whole report
    assert len(html) == 1 and html[0].startswith('<div class="hr-report">') and "<svg" not in html[0]
    assert f"Confusion report: model {candidate}" in html[0] and 'id="verdicts"' in html[0]
    assert "report.html" in html[0] and (report_dir / "report.html").exists()
    assert size < MAX_SAVED_BYTES, size
    assert "WARNING" not in out  # no model had seen the cases it was judged on
    # promoted on the verdict, and says what a running service does
    verdicts = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))["tables"]
    said = {t: rows[0]["verdict"] for t, rows in verdicts.items() if t.endswith("_compare_paired")}
    promote = "worse" not in said.values() and "better" in said.values()
    # (the live loop, step 7, may promote a later version: the history keeps the order)
    if promote:
        assert f"promoted {candidate}" in out and "A running service keeps serving" in out
        assert store.history()[store.history().index(before) + 1] == candidate
    else:
        assert f"kept {before}" in out and candidate not in store.history()
    assert out.rstrip().count("current version: ") >= 2
    return candidate


def test_retrain_notebook_on_the_demo(demo_store, tmp_path):
    store_dir, report_dir = tmp_path / "store", tmp_path / "report"
    shutil.copytree(demo_store.path, store_dir)
    before = ModelStore(store_dir).current()
    nb, code, out, html, size = run_notebook({"STORE": str(store_dir), "REPORT_DIR": str(report_dir),
                                              "CURVE_FRACTIONS": (0.5, 1.0), "CURVE_FOLDS": 2}, tmp_path)
    rows, held = len(pd.read_csv(DEMO_CORPUS)), len(pd.read_csv(DEMO_HELDOUT))
    assert f"model store: {store_dir} (current version: {before})" in out
    assert f"learning from all {rows:,} rows; comparing on the {held} cases of heldout.csv" in out
    assert f"training with settings of the current version {before}" in out  # its settings, and it says so
    assert "user dictionary " + str(ROOT / "data" / "ningxia" / "userdict.txt") in out
    assert "Validation report" in out and f"rows read: {rows}" in out
    assert "agency routing: 575 agencies in the directory" in out
    assert "measuring:" not in out and f"fitting the model on all {rows:,} rows" in out  # progress lines
    assert f"comparing on {held - _chance_matches(out)} cases neither model learned from" in out
    candidate = _common_checks(out, html, size, ModelStore(store_dir), before, report_dir)
    assert "Routing: why agencies were missed" in (report_dir / "report.html").read_text(encoding="utf-8")
    assert re.search(r"category: \d+ misrouted, \d+ disputed labels to re-check", out)
    assert re.search(r"threshold\s+routed_directly\s+accuracy_routed_directly", out)
    curve = _text(_cell(code, "learning_curve("))  # 6. more labeled cases? (the demo's agencies are routed)
    assert re.search(r"fraction\s+cases\s+category acc", curve) and "agency acc" not in curve
    assert "category: the last doubling of the cases gained" in curve
    assert candidate != before
    # 7. the live loop: a made-up week of the service (the current version's decisions on the held-out cases and a
    # dispatcher's labels for each), a candidate from export + corrections, judged on the newest cases
    assert f"{held} cases got a final label in the last 7 days; by source: dispatcher {held}" in out
    assert re.search(rf"category: right \d+\.\d% of {held} labeled cases", out)
    assert re.search(r"agency: right \d+\.\d% of \d+ labeled cases", out)
    assert f"{held} cases: 0 relabeled export cases, 0 confirmed export cases, {held} cases the export does not have" \
        in out
    assert "0 renamed or merged label(s) in the corrections" in out  # the demo's dispatcher renamed nothing
    loop_version = re.search(r"loop candidate: (\S+) \(saved, not current\)", out).group(1)
    assert f"judging on the {held} newest cases neither version learned from" in out
    store = ModelStore(store_dir)
    if f"promoted {loop_version} (the loop candidate)" in out:
        assert store.current() == loop_version and store.history()[-1] == loop_version
    else:
        assert re.search(r"kept \S+\ncurrent version: ", out) and loop_version not in store.history()


def _chance_matches(out: str) -> int:
    """Held-out cases a row fingerprint matched by chance (a Bloom filter with a random salt: about 1 case in
    10,000 per model), which step 4 leaves out and says so just before its count: none of them was learned."""
    before = out.split(" cases neither model learned from")[0].splitlines()[:-1]  # step 4's notes end here
    notes = []
    while before and before[-1].startswith("left out "):
        notes.append(before.pop())
    return sum(int(re.match(r"left out ([\d,]+)", n).group(1).replace(",", "")) for n in notes)


def _qingdao_shaped(tmp_path: Path) -> tuple[Path, str]:
    """A city hotline's own export: GBK CSV, Chinese headers, a date column, agencies only on forwarded cases,
    a handling column (办理方式), a few rows with a blank category.  From the real Qingdao work orders when
    ../shared has them, else from the demo corpus with made-up dates."""
    real = SHARED_DATA / "qingdao12345" / "work_orders.csv"
    if real.exists():
        df = pd.read_csv(real).sample(450, random_state=3)
        df = df[["text", "category", "agency", "handling", "date"]]
        source = "qingdao"
    else:
        df = pd.read_csv(DEMO_CORPUS)
        df = df[df["category"].isin(df["category"].value_counts().index[:6])].sample(450, random_state=3)
        df["handling"] = np.where(np.arange(len(df)) % 3 == 0, "直办", "转办")
        df.loc[df["handling"] == "直办", "agency"] = None
        df["date"] = pd.date_range("2017-01-01", periods=len(df), freq="D").strftime("%Y-%m-%d")
        source = "synthetic"
    df = df.reset_index(drop=True)
    df.loc[[5, 50, 300], "category"] = None  # the learning curve's crash: no category, a handling label
    df = df.rename(columns={"text": "诉求内容", "category": "一级分类", "agency": "承办单位", "handling": "办理方式",
                            "date": "受理日期"})
    path = tmp_path / "export.csv"
    df.to_csv(path, index=False, encoding="gbk", errors="replace")
    return path, source


def test_retrain_notebook_on_a_city_export(tmp_path):
    export, source = _qingdao_shaped(tmp_path)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"min_class_count": 3, "rare_policy": "other"}), encoding="utf-8")
    store_dir, report_dir = tmp_path / "store", tmp_path / "report"
    targets = {"category": "一级分类", "agency": "承办单位", "handling": "办理方式"}
    nb, code, out, html, size = run_notebook({
        "EXPORT": str(export), "TEXT": "诉求内容", "TARGETS": targets, "STORE": str(store_dir),
        "CONFIG": str(config), "REPORT_DIR": str(report_dir), "CURVE_FRACTIONS": (0.5, 1.0), "CURVE_FOLDS": 2,
    }, tmp_path)
    assert "(gb18030)" in out and "columns: 诉求内容, 一级分类, 承办单位, 办理方式, 受理日期" in out
    dates = pd.to_datetime(pd.read_csv(export, encoding="gbk")["受理日期"])
    newest = dates[dates >= dates.sort_values().iloc[-90]]  # the newest 20 %, the last day whole
    held = len(newest)
    assert 90 <= held < 100, source
    first, last = f"{newest.min():%Y-%m-%d}", f"{newest.max():%Y-%m-%d}"
    assert (f"held out the newest {held} cases (20%, 受理日期 from {first} to {last}); "
            f"learning from the {450 - held} before them") in out, source
    assert f"training with settings from the config file {config}" in out
    assert "min_class_count 3, rare classes -> other" in out and "user dictionary none" in out
    assert "the store has no current version: training one with these settings" in out
    assert "agency routing: none (flat model)" in out
    store = ModelStore(store_dir)
    first = store.history()[0]
    assert f"comparing on {held - _chance_matches(out)} cases neither model learned from" in out
    _common_checks(out, html, size, store, first, report_dir)
    assert "this section needs the service's log (DECISION_LOG); skipped" in out  # a store without a decision log
    curve = _text(_cell(code, "learning_curve("))
    assert re.search(r"category acc\s+category macro-F1\s+category top-3\s+agency acc", curve)
    assert "handling acc" in curve and "handling top-3" not in curve  # 2 classes: no top-3
