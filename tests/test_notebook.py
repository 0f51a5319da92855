"""notebooks/retrain.ipynb runs top to bottom on the demo data (nbclient, the venv's python3 kernel) and
its outputs say what happened: split, validation report, a saved candidate, the report, the decision."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from classifier.store import ModelStore
from training.demo import DEMO_CORPUS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "retrain.ipynb"


def _text(cell) -> str:  # noqa: ANN001
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_committed_notebook_has_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_retrain_notebook_runs_on_the_demo_data(demo_store, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # a copy of the session's demo store: its current version is the one to beat (no second baseline training)
    store_dir = tmp_path / "store"
    shutil.copytree(demo_store.path, store_dir)
    before = ModelStore(store_dir).current()
    report_dir = tmp_path / "report"
    monkeypatch.setenv("HOTLINE_NOTEBOOK_STORE", str(store_dir))
    monkeypatch.setenv("HOTLINE_NOTEBOOK_REPORT", str(report_dir))
    monkeypatch.delenv("HOTLINE_NOTEBOOK_DATA", raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    out = "\n".join(_text(c) for c in code)
    assert f"model store: {store_dir}" in out
    rows = len(pd.read_csv(DEMO_CORPUS))
    held = (rows + 4) // 5  # every fifth case, from the first
    assert f"{rows} rows: {rows - held} to train on, {held} held back for evaluation" in out
    assert "Validation report" in out and f"rows read: {rows - held}" in out
    assert "agency routing: 575 agencies in the directory" in out  # the demo export is routed, as in service
    assert f"current version: {before}" in out
    candidate = re.search(r"candidate version: (\S+) \(saved, not current\)", out).group(1)
    store = ModelStore(store_dir)
    assert set(store.versions()) == {before, candidate}

    html = [o["data"]["text/html"] for c in code for o in c.outputs if o.get("output_type") == "execute_result"
            and "text/html" in o.get("data", {})]
    assert len(html) == 1
    assert html[0].startswith('<div class="hr-report">') and f"Confusion report: model {candidate}" in html[0]
    assert html[0].count("<svg") == 6 and f"compared with version {before}" in html[0]
    assert "Routing: why agencies were missed" in html[0]

    assert (report_dir / "report.html").exists() and (report_dir / "tables" / "agency_misrouted.csv").exists()
    assert re.search(r"category: \d+ misrouted, \d+ disputed labels to re-check", out)
    assert re.search(r"threshold\s+routed_directly\s+accuracy_routed_directly", out)  # the operating points
    assert "flipped cases:" in out

    curve = _text(code[-1])  # 7. would more labeled cases help? (the demo's agencies are routed: category only)
    assert re.search(r"fraction\s+cases\s+category acc", curve) and "agency acc" not in curve
    assert "category: the last doubling of the cases gained" in curve

    decision = _text(code[-2])
    if "promoted" in decision:
        assert store.current() == candidate
    else:
        assert f"keeping {before}" in decision and store.current() == before
    assert decision.strip().endswith(f"current version: {store.current()}")
