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
    with pytest.raises(ValueError, match="unknown normalization version 4; this release knows 1 to 3"):
        normalize("路灯", version=4)


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


# -- version 3: names, addresses, plates, cards (issue 15, section 4) --------------------------------------------
@pytest.mark.parametrize(
    "raw,expected",
    [
        # names: after the words that introduce one, before a title, and the commonest full names
        ("我叫王小明，家住幸福小区", "我叫<NAME>,家住幸福小区"),
        ("本人张伟反映", "本人<NAME>反映"),
        ("来电人：李某某", "来电人:<NAME>"),
        ("本人姓名：欧阳娜娜，电话", "本人姓名:<NAME>,电话"),
        ("联系人 王芳 13895012345", "联系人 <NAME> <PHONE>"),
        ("王先生来电反映", "<NAME>先生来电反映"),
        ("同心县马建国大爷说", "同心县<NAME>大爷说"),
        ("业主张女士", "业主<NAME>女士"),
        ("小区保安王师傅不管", "小区保安<NAME>师傅不管"),
        ("李娜的车被刮了", "<NAME>的车被刮了"),
        # not names: trades before a title, words after a cue, places and agencies
        ("司机师傅绕路", "司机师傅绕路"),
        ("保安师傅不管", "保安师傅不管"),
        ("门卫大爷和宿管阿姨", "门卫大爷和宿管阿姨"),
        ("班主任老师", "班主任老师"),
        ("本人向贵单位反映", "本人向贵单位反映"),
        ("本人于近日发现", "本人于近日发现"),
        ("本人李旺镇村民", "本人李旺镇村民"),
        ("我叫小明", "我叫小明"),
        ("老王刚才说", "老王刚才说"),
        ("紧张军训", "紧张军训"),
        # house, building, unit and room numbers
        ("幸福小区7号楼3单元302室漏水", "幸福小区<ADDRESS>漏水"),
        ("滨河家园12号楼 3单元 302", "滨河家园<ADDRESS>"),
        ("长城路12号3栋", "长城路<ADDRESS>"),
        ("住1-2-302", "住<ADDRESS>"),
        ("七号楼三单元", "<ADDRESS>"),
        ("我们住18楼", "我们住<ADDRESS>"),
        # ...but not dates, counts, metro lines, layouts, work-team numbers
        ("3月5号开始停暖", "3月5号开始停暖"),
        ("地铁5号线", "地铁5号线"),
        ("100户居民", "100户居民"),
        ("1室1厅", "1室1厅"),
        ("2024-03-05", "2024-03-05"),
        ("杨堡村6队", "杨堡村6队"),
        # licence plates and card numbers
        ("宁A·12345的车乱停", "<PLATE>的车乱停"),
        ("车牌鲁B12345", "车牌<PLATE>"),
        ("宁Ａ５Ｋ２１Ｘ", "<PLATE>"),
        ("新能源车川AD12345", "新能源车<PLATE>"),
        ("新iphone坏了", "新iphone坏了"),
        ("卡号6222 0213 8123 4567 890", "卡号<CARD>"),
        ("卡号6222021381234567", "卡号<CARD>"),
        ("订单号20240305123456789012", "订单号20240305123456789012"),  # 20 digits: an invoice, not a card
    ],
)
def test_normalize_version_3_masks_names_addresses_plates_and_cards(raw, expected):
    assert normalize(raw) == expected
    assert normalize(raw, version=3) == expected


def test_versions_1_and_2_keep_reading_names_and_addresses_as_they_were_trained():
    raw = "我叫王小明，住7号楼3单元302室，车牌宁A12345，卡号6222021381234567"
    for version in (1, 2):
        assert normalize(raw, version=version) == "我叫王小明,住7号楼3单元302室,车牌宁a12345,卡号6222021381234567"
    assert normalize(raw) == "我叫<NAME>,住<ADDRESS>,车牌<PLATE>,卡号<CARD>"


def test_no_place_or_agency_of_the_demo_directory_is_masked():
    """Name masking must not eat a county, a town or an agency, alone or after the words that introduce a name."""
    import csv

    from training.demo import DEMO_DIR

    names = set()
    for table, columns in (("places.csv", ("city", "county", "town")), ("agencies.csv", ("agency",))):
        with (DEMO_DIR / table).open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                names.update(row[c] for c in columns if row[c])
    assert len(names) > 700
    masked = [n for n in names for text in (n, f"本人{n}村民", f"我叫{n},", f"{n}师傅", f"{n}先生")
              if "<" in normalize(text)]
    assert masked == []


def test_reports_mask_names_and_addresses_too():
    assert mask_pii("联系人王女士，住7号楼") == "联系人<NAME>女士，住<ADDRESS>"
    assert mask_pii("车牌宁A·12345") == "车牌<PLATE>"
