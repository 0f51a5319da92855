"""The report answers first, in real headless Chromium: with 9 and with 64 classes, full-page screenshots; the
verdict and the headline numbers are within the first 1,200 px; no label text is clipped (element widths are
measured in the page); the table of contents stays in view; printed, nothing is a scroll box."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from classifier.model import ComplaintClassifier
from tests.browser_support import chromium, needs_chromium
from tests.conftest import tiny_config
from training.demo import DEMO_CORPUS
from training.report import evaluate

pytestmark = needs_chromium


def _report(target: str, n_classes: int, out: Path) -> tuple[Path, dict]:
    """A candidate (C=1) against a weaker current version (C=0.05) on cases neither learned from."""
    df = pd.read_csv(DEMO_CORPUS)
    keep = df[target].value_counts().index[:n_classes]
    df = df[df[target].isin(keep)].reset_index(drop=True)
    learn, new = df[df.index % 3 != 0], df[df.index % 3 == 0]
    texts, labels = learn["text"].tolist(), {target: learn[target].tolist()}
    candidate = ComplaintClassifier(tiny_config(**{"model.C": 1.0, "model.fusion": "off"})).fit(texts, labels)
    current = ComplaintClassifier(tiny_config(**{"model.C": 0.05, "model.fusion": "off"})).fit(texts, labels)
    report = evaluate(candidate, new, targets={target: target}, compare=current, version="candidate",
                      compare_version="current", oof_folds=0)
    path = report.save(out)["html"]
    t, c = report.targets[target], report.comparisons[target]
    return path, {"target": target, "classes": len(t.labels), "accuracy": f"{t.metrics['accuracy']:.4f}",
                  "macro_f1": f"{t.metrics['macro_f1']:.4f}", "verdict": c.paired["verdict"]}


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[tuple[Path, dict]]:
    out = tmp_path_factory.mktemp("screens")
    return [_report("category", 9, out / "nine"), _report("agency", 64, out / "many")]


CLIPPED = r"""() => {
  const out = [];
  // SVG labels and captions inside their SVG box (a rotated label's box is its rotated extent)
  document.querySelectorAll("svg").forEach((svg) => {
    const box = svg.getBoundingClientRect();
    svg.querySelectorAll("text").forEach((t) => {
      const r = t.getBoundingClientRect();
      if (r.width === 0) return;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        out.push(`svg text "${t.textContent}" ${Math.round(r.left)}..${Math.round(r.right)} outside `
                 + `${Math.round(box.left)}..${Math.round(box.right)}`);
    });
  });
  // table cells and headers whose text is wider than the cell
  document.querySelectorAll("th, td").forEach((c) => {
    if (c.scrollWidth > c.clientWidth + 1) out.push(`cell "${c.textContent.slice(0, 30)}" overflows`);
  });
  // nothing wider than the page
  const page = document.documentElement.clientWidth;
  document.querySelectorAll(".hr-report svg, .hr-report table").forEach((el) => {
    const r = el.getBoundingClientRect();
    if (r.right > page + 0.5 && !el.closest(".scroll")) out.push(`${el.tagName} ends at ${r.right} > ${page}`);
  });
  return out;
}"""


def test_first_screen_answers_and_nothing_is_clipped(reports, tmp_path):
    from PIL import Image

    with chromium() as browser:
        for path, want in reports:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r, requests=requests: requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            target = want["target"]
            # the headline numbers and the verdict: right values, within the first 1,200 px of the page
            for key in ("accuracy", "macro_f1"):
                cell = page.locator(f'#headline tr[data-target="{target}"] td[data-metric="{key}"]')
                assert cell.inner_text() == want[key]
                assert cell.bounding_box()["y"] + cell.bounding_box()["height"] <= 1200
            verdict = page.locator(f'#verdicts tr[data-target="{target}"] .badge')
            assert verdict.inner_text() == want["verdict"] and verdict.get_attribute("data-verdict") == \
                want["verdict"]
            assert verdict.bounding_box()["y"] + verdict.bounding_box()["height"] <= 1200
            assert page.locator("div.overlap").first.bounding_box()["y"] < 1200  # what it was evaluated on
            assert page.evaluate(CLIPPED) == []
            # every class of the heatmap has its full name in the table beside it
            key_rows = page.locator(f"#heatmap-key-{target} tbody tr").count()
            assert key_rows == min(want["classes"], 25)
            # the table of contents stays in view
            page.mouse.wheel(0, 6000)
            page.wait_for_timeout(200)
            assert abs(page.locator("nav.toc").bounding_box()["y"]) < 1
            shot = page.screenshot(full_page=True)
            (tmp_path / f"{target}.png").write_bytes(shot)
            image = Image.open(io.BytesIO(shot))
            assert image.width == 1280 and image.height > 3000  # the whole page, every table whole
            # printed: no scroll boxes, the table of contents in the flow
            page.emulate_media(media="print")
            overflow = page.evaluate("""() => Array.from(document.querySelectorAll('.scroll'))
                .map((e) => getComputedStyle(e).overflowX + '/' + getComputedStyle(e).overflowY)""")
            assert overflow and set(overflow) == {"visible/visible"}
            assert page.evaluate("getComputedStyle(document.querySelector('nav.toc')).position") == "static"
            assert requests == [path.resolve().as_uri()]
            page.close()
    assert reports[1][1]["classes"] >= 60 and reports[0][1]["classes"] == 9
