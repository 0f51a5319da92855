"""Normalization, masking and the tokenizer: golden segmentations pin jieba's behaviour."""

from __future__ import annotations

import pickle

import jieba
import pytest

from classifier.errors import DictionaryError
from classifier.text import ComplaintTokenizer, mask_pii, normalize, sha256_text
from training.demo import STOP_WORDS, USER_DICT, build_user_dictionary

# (sentence, tokens without the user dictionary, tokens with the demo dictionary)
GOLDEN = [
    (
        "海原县李旺镇杨堡村6队空气能故障，影响村民正常生活",
        ["海原县", "李", "旺", "镇", "杨", "堡", "村", "6", "队", "空气", "能", "故障", "影响", "村民", "正常", "生活"],
        ["海原县", "李旺镇", "杨", "堡", "村", "6", "队", "空气能", "故障", "影响", "村民", "正常", "生活"],
    ),
    (
        "兴庆区交警一大队不管六盘山中路的违章停车",
        ["兴庆区", "交警", "一", "大队", "不管", "六盘山", "中路", "的", "违章", "停车"],
        ["兴庆区交警一大队", "不管", "六盘山", "中路", "的", "违章停车"],
    ),
    (
        "大武口区永乐南路路面塌陷",
        ["大武口区", "永乐", "南路", "路面", "塌陷"],
        ["大武口区", "永乐", "南路", "路面塌陷"],
    ),
    (
        "金凤区丰登镇的电采暖不热",
        ["金凤区", "丰登", "镇", "的", "电采暖", "不", "热"],
        ["金凤区", "丰登镇", "的", "电采暖", "不", "热"],
    ),
    (
        "同心县出租车司机拒载还绕路",
        ["同心县", "出租车", "司机", "拒载", "还", "绕路"],
        ["同心县", "出租车", "司机", "拒载", "还", "绕路"],
    ),
]


@pytest.fixture(scope="module")
def plain() -> ComplaintTokenizer:
    return ComplaintTokenizer()


@pytest.fixture(scope="module")
def with_dict() -> ComplaintTokenizer:
    return ComplaintTokenizer.from_files(USER_DICT)


@pytest.mark.parametrize("sentence,expected,_", GOLDEN)
def test_golden_segmentation_without_user_dictionary(plain, sentence, expected, _):
    assert plain(sentence) == expected


@pytest.mark.parametrize("sentence,_,expected", GOLDEN)
def test_golden_segmentation_with_user_dictionary(with_dict, sentence, _, expected):
    assert with_dict(sentence) == expected


def test_user_dictionary_does_not_touch_global_jieba(with_dict):
    with_dict("海原县李旺镇")
    assert "李旺镇" not in jieba.dt.FREQ or jieba.dt.FREQ.get("李旺镇") == 0 or not jieba.dt.initialized
    assert list(jieba.Tokenizer().cut("李旺镇", HMM=False)) != ["李旺镇"]


def test_tokenizer_pickles_and_segments_the_same(with_dict):
    sentence = GOLDEN[0][0]
    before = with_dict(sentence)
    clone = pickle.loads(pickle.dumps(with_dict))
    assert clone._jieba is None  # rebuilt lazily, the jieba instance is not in the pickle
    assert clone(sentence) == before
    assert clone.user_dict_sha256 == sha256_text(USER_DICT.read_text(encoding="utf-8"))


def test_single_characters_are_kept_and_punctuation_dropped(plain):
    assert plain("井盖丢了！！，。……") == ["井盖", "丢", "了"]


def test_stop_words_are_removed():
    tok = ComplaintTokenizer.from_files(USER_DICT, STOP_WORDS)
    assert ComplaintTokenizer()("您好，井盖丢了，谢谢") == ["您好", "井盖", "丢", "了", "谢谢"]
    assert tok("您好，井盖丢了，谢谢") == ["井盖", "丢", "了"]


def test_user_dictionary_file_matches_the_domain_tables():
    assert USER_DICT.read_text(encoding="utf-8") == build_user_dictionary()


def test_malformed_user_dictionary_is_refused_with_line_number(tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("李旺镇 10 ns\n空气能 很多 n x\n", encoding="utf-8")
    with pytest.raises(DictionaryError, match=r"dict.txt:2: expected 'word \[frequency\] \[tag\]'"):
        ComplaintTokenizer.from_files(bad)


def test_missing_dictionary_file_is_a_clear_error(tmp_path):
    with pytest.raises(DictionaryError, match="user dictionary file not found"):
        ComplaintTokenizer.from_files(tmp_path / "nope.txt")


def test_non_utf8_dictionary_is_a_clear_error(tmp_path):
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("空气能\n".encode("gbk"))
    with pytest.raises(DictionaryError, match="is not UTF-8"):
        ComplaintTokenizer.from_files(gbk)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("ＡＢＣ１２３路灯", "abc123路灯"),  # full-width to half-width, lower-cased
        ("路灯\u3000\u3000不亮\t\n\n了", "路灯 不亮 了"),  # web-form whitespace debris
        ("<p>路灯&nbsp;不亮</p><br/>", "路灯 不亮"),  # tags and entities
        ("&lt;b&gt;井盖&lt;/b&gt;丢了", "井盖 丢了"),  # escaped tags
        ("  前后空白  ", "前后空白"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        # Excel's escape of a carriage return, as pandas/openpyxl leave it in an exported web-form message
        ("请领导解决焚烧垃圾问题_x000D_\n\u3000\u3000事情经过_x000D_", "请领导解决焚烧垃圾问题 事情经过"),
        ("路灯_x0009_不亮", "路灯 不亮"),  # an escaped tab
        ("a_x005F_x000D_b", "a_x000d_b"),  # an escaped underscore: the cell held the literal text a_x000D_b
        ("编号_xD800_", "编号_xd800_"),  # a surrogate is no character: left as it was
        ("\u200b银川市\u200d兴庆区\ufeff路灯\u00ad不亮", "银川市兴庆区路灯不亮"),  # invisible characters
    ],
)
def test_normalize_version_2_decodes_excel_escapes_and_drops_invisible_characters(raw, expected):
    assert normalize(raw) == expected
    assert normalize(raw, version=2) == expected


def test_normalize_version_1_is_kept_for_older_models():
    assert normalize("请领导解决_x000D_事情", version=1) == "请领导解决_x000d_事情"
    assert normalize("\u200b路灯", version=1) == "\u200b路灯"
    with pytest.raises(ValueError, match="unknown normalization version 3"):
        normalize("路灯", version=3)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("联系电话13895012345", "联系电话<PHONE>"),
        ("电话138-9501-2345谢谢", "电话<PHONE>谢谢"),
        ("+86 13895012345", "<PHONE>"),
        ("座机0951-5012345", "座机<PHONE>"),
        ("座机(0951)5012345", "座机<PHONE>"),
        ("身份证64010219800101123x", "身份证<ID>"),
        ("身份证号640102198001011234", "身份证号<ID>"),
        ("邮箱zhang.san@example.com", "邮箱<EMAIL>"),
        ("杨堡村6队2024年3月5日", "杨堡村6队2024年3月5日"),  # ordinary numbers stay
        ("订单号20240305123456789012", "订单号20240305123456789012"),  # 20 digits: not an ID or phone
    ],
)
def test_mask_pii(raw, expected):
    assert mask_pii(raw) == expected


def test_normalize_masks_and_tokenizer_keeps_placeholders_whole(plain):
    assert normalize("电话：１３８９５０１２３４５") == "电话:<PHONE>"
    assert plain("我的电话13895012345，身份证640102198001011234") == ["我", "的", "电话", "<PHONE>", "身份证", "<ID>"]


def test_forged_placeholder_is_lowercased_not_trusted(plain):
    assert "<PHONE>" not in plain("<PHONE>路灯")  # a typed tag is HTML and removed; lower-casing defeats forgery
