"""benchmarks/run.py rewrites only its own BENCHMARKS.md section and keeps the previous run below the new one."""

from __future__ import annotations

from pathlib import Path

from benchmarks.datasets import load_tasks
from benchmarks.run import END, START, write_section

OTHERS = "<!-- serve:start -->\n## Service\n\nserve numbers\n<!-- serve:end -->\n"


def test_write_section_replaces_only_its_section_and_keeps_one_previous_run(tmp_path: Path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{START}\n## Accuracy\n\nNot measured yet.\n{END}\n\n{OTHERS}", encoding="utf-8")
    write_section(path, "## Accuracy\n\nrun one\n", "d1")
    text = path.read_text(encoding="utf-8")
    assert "run one" in text and "Not measured yet" not in text and "Previous run" not in text
    write_section(path, "## Accuracy\n\n### Targets\n\nrun two\n", "d2")
    write_section(path, "## Accuracy\n\nrun three\n", "d3")
    text = path.read_text(encoding="utf-8")
    section = text.split(START)[1].split(END)[0]
    assert section.index("run three") < section.index("### Previous run") < section.index("run two")
    assert "run one" not in section and "#### Targets" in section  # older history dropped, headings demoted
    assert text.endswith(OTHERS) and text.startswith("# Benchmarks\n\n")


def test_missing_data_is_skipped_with_a_clear_message(tmp_path: Path):
    tasks, skipped = load_tasks(tmp_path)
    assert tasks == []
    assert len(skipped) == 4 and all("not found" in s and "../shared/data" in s for s in skipped)
