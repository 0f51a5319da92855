"""The report opens in headless Chromium (Debian's ``chromium``) with no console errors and no network
requests, its tables sort, its Chinese labels render as glyphs (not boxes), and a screenshot is not blank."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from tests.browser_support import chromium, needs_chromium, watch
from tests.conftest import TINY_CASES
from training.report import evaluate

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page_file(tiny_model, tmp_path_factory) -> Path:
    df = pd.DataFrame(TINY_CASES * 2, columns=["text", "category", "agency"])
    df.loc[[1, 5, 13], "category"] = ["供暖供热", "交通秩序", "道路设施"]  # wrong labels: errors to show
    df.loc[7, "agency"] = "新成立的市数据局"
    report = evaluate(tiny_model, df, targets={"category": "category", "agency": "agency"},
                      compare=tiny_model, oof_folds=2)
    out = tmp_path_factory.mktemp("browser")
    return report.save(out)["html"]


def test_report_opens_offline_without_errors(page_file):
    from PIL import Image

    url = page_file.resolve().as_uri()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        events = watch(page)
        page.goto(url, wait_until="load")
        assert page.title().startswith("Confusion report")
        assert page.locator("section#target-category svg").count() == 3
        # click "f1" twice: descending, so the best class comes first
        header = page.locator("#per-class-category th", has_text="f1").first
        header.click()
        header.click()
        first_f1 = page.locator("#per-class-category tbody tr").first.locator("td").nth(3).inner_text()
        assert first_f1 == "1.0000"
        # a model compared with itself: nothing flipped, and the page says the difference is none
        paired = page.locator("section#compare-category p.paired").inner_text()
        assert "right→wrong 0" in paired and "no significant difference" in paired
        # the labels are Chinese: with the page's fonts, a CJK character must not draw the same "tofu" box as
        # a code point no font has (.ci/run installs fonts-wqy-zenhei; without a CJK font this fails)
        glyphs = page.evaluate(r"""() => {
            const draw = (ch) => {
                const c = document.createElement("canvas"); c.width = 40; c.height = 40;
                const g = c.getContext("2d");
                g.font = "32px " + getComputedStyle(document.body).fontFamily;
                g.fillText(ch, 2, 34);
                return Array.from(g.getImageData(0, 0, 40, 40).data).join(",");
            };
            return {cjk: [draw("交"), draw("局")], missing: draw("\u{10FFFD}")};
        }""")
        assert glyphs["cjk"][0] != glyphs["cjk"][1], "CJK characters render as identical boxes: no CJK font"
        assert glyphs["missing"] not in glyphs["cjk"]
        shot = page.screenshot(full_page=False)
    assert events.problems == []
    assert events.requests == [url]
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 20  # text, cards and heatmap colours, not one blank colour
    white = sum(count for count, c in colors if c == (255, 255, 255))
    assert white < 0.97 * image.width * image.height


def test_notebook_output_tables_sort_even_when_the_report_is_shown_twice(page_file, tiny_model, tmp_path):
    """Jupyter shows ``_repr_html_`` (fragment + script) in the notebook's page; a cell run twice puts two
    reports (and two scripts) in one document, and each header click must still sort exactly once."""
    df = pd.DataFrame(TINY_CASES * 2, columns=["text", "category", "agency"])
    df.loc[[1, 5, 13], "category"] = ["供暖供热", "交通秩序", "道路设施"]
    report = evaluate(tiny_model, df, targets={"category": "category"}, oof_folds=0)
    output = report.full()._repr_html_()
    assert output.count("<script>") == 1
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                        f'<div class="output">{output}</div><div class="output">{output}</div></body></html>',
                        encoding="utf-8")
    with chromium() as browser:
        page = browser.new_page()
        page.goto(notebook.resolve().as_uri(), wait_until="load")
        tables = page.locator("table#per-class-category")
        assert tables.count() == 2
        for i in range(2):  # the first report's table has seen both scripts run
            table = tables.nth(i)
            header = table.locator("th", has_text="f1").first
            header.click()  # ascending: the worst class first
            values = [float(v) for v in table.locator("tbody tr td:nth-child(4)").all_inner_texts()]
            assert values == sorted(values) and values[0] < 1.0
            header.click()  # descending
            values = [float(v) for v in table.locator("tbody tr td:nth-child(4)").all_inner_texts()]
            assert values == sorted(values, reverse=True) and values[0] == 1.0
