"""rjieba (jieba-rs) must segment exactly like jieba: the "auto" segmenter swaps one for the other freely."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.text import ComplaintTokenizer, normalize
from training.demo import DEMO_DIR as DEMO

rjieba = pytest.importorskip("rjieba", reason="rjieba is not installed (pip install rjieba)")

# hotline sentences of every shape: addresses, agencies, numbers, latin, placeholders, punctuation, long words
GOLDEN = [
    "兴庆区解放东街红绿灯坏了，路口堵车严重",
    "朝阳西街路面塌了一个大坑，晚上很危险！！",
    "同心县客运站的班车老是晚点，投诉多次无果。",
    "李旺镇煤改电以后屋里温度上不去，老人孩子受不了",
    "小区物业费一年涨了30%，业主委员会不同意",
    "我的电话是13912345678，请尽快回复",
    "A市A3区某楼盘开发商延期交房两年，购房者维权无门",
    "城管执法人员在夜市暴力执法，要求调查处理",
    "幼儿园收取高额赞助费，教育局是否知情？",
    "医保报销比例下调，退休职工看病负担加重",
    "WiFi信号差，4G网络在地下车库完全没有",
    "公交12路末班车提前收车，晚归乘客无车可坐",
    "社保卡补办需要跑三个部门，能否一网通办",
    "噪音扰民：建筑工地夜间施工到凌晨两点",
]


@pytest.mark.parametrize("hmm", [False, True])
def test_rjieba_agrees_with_jieba_on_the_golden_set(hmm):
    jieba_tok = ComplaintTokenizer(segmenter="jieba", hmm=hmm)
    rjieba_tok = ComplaintTokenizer(segmenter="rjieba", hmm=hmm)
    for text in GOLDEN:
        assert rjieba_tok(text) == jieba_tok(text), text


def test_golden_tokens_are_pinned():
    tok = ComplaintTokenizer(segmenter="auto")
    assert tok(GOLDEN[0]) == ["兴庆区", "解放", "东街", "红绿灯", "坏", "了", "路口", "堵车", "严重"]
    assert tok(GOLDEN[5]) == ["我", "的", "电话", "是", "<PHONE>", "请", "尽快", "回复"]


def test_auto_uses_rjieba_with_and_without_a_user_dictionary():
    assert ComplaintTokenizer(segmenter="auto").engine == "rjieba"
    assert ComplaintTokenizer(segmenter="auto", user_dict="兴庆区交警一大队 10 n").engine == "rjieba"
    assert ComplaintTokenizer(segmenter="jieba").engine == "jieba"
    assert TrainingConfig().features.segmenter == "auto"


def test_auto_falls_back_to_jieba_where_rjieba_is_missing(monkeypatch):
    import sys

    tok = pickle.loads(pickle.dumps(ComplaintTokenizer(segmenter="auto")))
    monkeypatch.setitem(sys.modules, "rjieba", None)  # makes `import rjieba` raise ImportError
    assert tok.engine == "jieba"
    assert tok(GOLDEN[0]) == ComplaintTokenizer(segmenter="jieba")(GOLDEN[0])


@pytest.mark.parametrize("hmm", [False, True])
def test_rjieba_with_the_demo_user_dictionary_agrees_with_jieba_on_the_whole_demo_corpus(hmm):
    """The user dictionary goes into rjieba through add_word: every demo complaint must segment as jieba's
    load_userdict segments it (a missing frequency, a tag, a BOM on the first line)."""
    user_dict = "\ufeff" + (DEMO / "userdict.txt").read_text(encoding="utf-8")
    jieba_tok = ComplaintTokenizer(segmenter="jieba", user_dict=user_dict, hmm=hmm)
    rjieba_tok = ComplaintTokenizer(segmenter="rjieba", user_dict=user_dict, hmm=hmm)
    texts = pd.read_csv(DEMO / "complaints.csv")["text"].tolist() + GOLDEN
    differ = [t for t in texts if rjieba_tok(t) != jieba_tok(t)]
    assert differ == []
    # the dictionary is really used: a place name from it stays one token in both
    assert "李旺镇" in rjieba_tok("海原县李旺镇杨堡村") and "李旺镇" not in ComplaintTokenizer(segmenter="rjieba")(
        "海原县李旺镇杨堡村")


def test_rjieba_user_dictionary_frequency_and_tag_are_honoured():
    plain = ComplaintTokenizer(segmenter="rjieba")
    assert "六盘山中路" not in plain("六盘山中路施工")
    for entry in ("六盘山中路", "六盘山中路 5", "六盘山中路 5 ns", "六盘山中路 ns"):
        tok = ComplaintTokenizer(segmenter="rjieba", user_dict=entry)
        assert tok("六盘山中路施工") == ComplaintTokenizer(segmenter="jieba", user_dict=entry)("六盘山中路施工"), entry


def test_unknown_segmenters_are_refused():
    with pytest.raises(ValueError, match="segmenter must be one of"):
        ComplaintTokenizer(segmenter="pkuseg")


def test_normalized_placeholders_survive_both_segmenters():
    text = normalize("身份证110101199003071234，邮箱a.b@example.com")
    for seg in ("jieba", "rjieba"):
        tokens = ComplaintTokenizer(segmenter=seg).cut(text)
        assert "<ID>" in tokens and "<EMAIL>" in tokens
