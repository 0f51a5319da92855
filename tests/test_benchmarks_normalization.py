"""benchmarks/normalization.py: both normalizations are fitted and scored, masks are counted, the row says so."""

from __future__ import annotations

from benchmarks.datasets import Task
from benchmarks.normalization import END, START, mask_counts, render, run_task

TOPICS = {
    "供暖": ["暖气不热屋里冷", "供暖温度不达标", "暖气片冰凉", "热力公司不来修"],
    "停车": ["小区乱停车堵路", "车位被占了", "门口停车收费乱", "消防通道停满车"],
}


def test_both_versions_are_scored_side_by_side_and_the_new_masks_counted():
    texts, labels = [], []
    for label, phrases in TOPICS.items():
        for i in range(12):
            planted = f"我叫王小明，住{i + 1}号楼302室，{phrases[i % 4]}"
            texts.append(planted if i % 3 == 0 else phrases[i % 4] + "，请处理")
            labels.append(label)
    tests = [p for ps in TOPICS.values() for p in ps]
    task = Task("toy", "two topics", texts, labels, tests, [t for t, ps in TOPICS.items() for _ in ps])
    assert mask_counts(["我叫王小明，住7号楼", "车牌宁A·12345", "路灯坏了"]) == {
        "<NAME>": 1, "<ADDRESS>": 1, "<PLATE>": 1, "<CARD>": 0, "texts": 2}
    result = run_task(task)
    assert set(result["versions"]) == {2, 3}
    assert result["versions"][3]["accuracy"] == 1.0  # the topics are separable either way
    assert result["versions"][3]["n_features"] < result["versions"][2]["n_features"]  # names, numbers gone
    assert result["masks"]["<NAME>"] == 8 and result["masks"]["texts"] == 8
    section = render([result], ".venv/bin/python -m benchmarks.normalization", 1.0)
    assert section.startswith(START) and section.rstrip().endswith(END)
    assert "| toy | 24 / 8 | 1.0000 → 1.0000 |" in section and "| 8 (33.3%) | 8 / 8 / 0 / 0 |" in section
