"""Normalization, personal-data masking and the jieba tokenizer.

This is the one text path for training and serving: the vectorizer owns a ``ComplaintTokenizer`` and is
pickled inside the model, so a served model normalizes and segments exactly as it did when trained.
"""

from __future__ import annotations

import hashlib
import html
import io
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import DictionaryError

__all__ = [
    "PLACEHOLDERS",
    "NORMALIZATION_VERSION",
    "normalize",
    "is_blank",
    "mask_pii",
    "ComplaintTokenizer",
    "read_dictionary",
    "sha256_text",
]

# Placeholder tokens that replace personal data.  Upper-case ASCII in angle brackets: normalization lower-cases
# everything before masking, so a caller cannot forge one, and the tokenizer keeps each as a single token.
PHONE, ID_NUMBER, EMAIL = "<PHONE>", "<ID>", "<EMAIL>"
# from normalization version 3: person names, house/building/unit/room numbers, licence plates, card numbers
NAME, ADDRESS, PLATE, CARD = "<NAME>", "<ADDRESS>", "<PLATE>", "<CARD>"
PLACEHOLDERS = (PHONE, ID_NUMBER, EMAIL, NAME, ADDRESS, PLATE, CARD)

_TAG = re.compile(r"<[^<>]{0,200}>")
_SPACE = re.compile(r"\s+")
_EMAIL = re.compile(r"[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}")
# 18-digit resident ID (last may be X); checked before phones so its digits are not read as a phone
_ID = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9x](?![0-9a-z])")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])(?:\(0[0-9]{2,3}\)|0[0-9]{2,3})[- ]?[2-9][0-9]{6,7}(?![0-9])")
# Excel's escape of a character XML cannot hold (`_x000D_` for a carriage return; `_x005F_` for the
# underscore that starts an escape): spreadsheet exports of web forms are full of them, and openpyxl (pandas)
# leaves them in the cell text, while the same complaint typed into the service has the real character
_OOXML_ESCAPE = re.compile(r"_x([0-9a-fA-F]{4})_")
# invisible format characters (zero-width space/joiners, BOM, soft hyphen, direction marks) that NFKC keeps:
# pasted from web pages and chat apps, they split words and char n-grams without being seen
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# 1: NFKC, HTML, whitespace, case, masking.  2: also Excel escapes decoded and invisible characters removed
# (before NFKC).  3: also person names, house/building/unit/room numbers, licence plates and bank card numbers
# masked.  A model keeps the version it was trained with (ComplaintVectorizer.normalization), so a newer
# release never changes how an older model reads text
NORMALIZATION_VERSION = 3
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")

# -- version 3: cards, plates, addresses, names ------------------------------------------------------------------
# 16-19 digits (groups of 4 may be spaced or hyphenated): bank cards, and the order numbers of shops, which point
# at one buyer as surely.  Runs of 20 digits and more (invoice and work-order numbers) are left alone
_CARD = re.compile(r"(?<![0-9])[0-9]{4}(?:[- ]?[0-9]{4}){3}(?:[- ]?[0-9]{1,3})?(?![0-9])")
# a Chinese licence plate: province character, the city letter, an optional dot, 5 (6 for new-energy) letters and
# digits of which at least 3 are digits (so 新iphone is no plate)
_PLATE = re.compile(
    "[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][a-z] ?[·•.\\-]? ?"
    r"(?=(?:[a-z]*[0-9]){3})[a-z0-9]{5,6}(?![a-z0-9])",
    re.IGNORECASE,
)
# house, building, unit and room numbers: 7号楼, 3单元302, 302室, 1-2-302, 长城路12号.  Bare numbers elsewhere
# (3月5号, 5号线, 100户居民, 1室1厅) are not addresses and stay
_UNIT = (r"(?:[0-9]+[a-z]? ?(?:号楼|号院|号门|号房|号铺|栋|幢|座|单元|楼|层|室(?![0-9]*厅))"
         r"|[一二三四五六七八九十]+(?:号楼|单元|号院))")
_STREET_NUMBER = r"(?<=[路街巷弄道里])[0-9]+(?:-[0-9]+)?号(?!线)"
_DASHED = r"(?<![0-9-])[0-9]{1,3}-[0-9]{1,2}-[0-9]{2,4}(?![0-9-])"  # building-unit-room
_ADDRESS = re.compile(
    f"(?:{_STREET_NUMBER}|{_UNIT}|{_DASHED})(?:[- ]?{_UNIT})*(?:[- ]?[0-9]{{2,5}}(?:室|房|号|户)?(?![0-9]))?"
)
# the most common surnames, without those that end everyday words before a title (保安师傅, 门卫大爷, 宿管阿姨,
# 班主任老师, 本人向/于...), which would otherwise read as names
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤常康施"
    "牛樊葛邢齐乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿焦俞左柳祝包尚舒阮柯纪梅童凌毕季裴霍涂苗谷盛曲翁冉骆蓝游辛"
    "靳柴鲍喻祁蒲滕屈饶牟艾尤穆卓缪褚娄窦戚岑党宫费冷晏席米柏瞿桂佟臧闵苟邬卞姬仇栾隋刁巫寇桑甄虞敖巩佘"
)
_COMPOUND_SURNAMES = "欧阳|司马|上官|诸葛|皇甫|尉迟|公孙|慕容|令狐|夏侯|司徒|端木|独孤|南宫|宇文|长孙"
_SURNAME = f"(?:{_COMPOUND_SURNAMES}|[{_SURNAMES}])"
# characters that are not part of a given name: function words, verbs that follow a name, kinship words, the suffixes
# of places and organisations (so 李旺镇, 金凤区, 石嘴山市 are never read as names)
_NOT_GIVEN = ("的了是在住家反映投诉举报来去要想因于现所向称说讲求今年月日时电话号码和与及或等也都就还又被把给让对"
              "从到为以之其这那个们我你他她它您老阿姨叔爷妈哥弟妹"
              "镇乡村县区市街路巷道省州城湾庄堡屯沟社组队楼院栋单元室门口里内外上下山河湖桥站场园苑府店局所校厂馆"
              "某一二三四五六七八九十百千万")
_GIVEN = f"(?:(?![{_NOT_GIVEN}])[\u4e00-\u9fff])"
_PLACE_AFTER = "镇乡村县区市街路巷道省州城湾庄堡屯沟社组队楼院山河湖桥站场园苑府店局所校厂馆"
# surname + title: 王先生, 张女士, 李师傅, 王建国先生, 张某某女士 (the title stays: it names no one)
_TITLES = "先生|女士|小姐|师傅|阿姨|大爷|大妈|大姐|大哥|同志|经理|主任|书记|局长|科长|所长|院长|校长|队长|站长|村长"
_TITLED_NAME = re.compile(f"{_SURNAME}(?:某{{1,2}}|{_GIVEN}{{0,2}})(?=(?:{_TITLES}))")
# a name after the words that introduce one: 我叫王小明, 本人张伟, 来电人：李某, 联系人 王芳; the name must end at
# punctuation, a digit, a title, or a word that follows a name (反映, 家住, 电话...)
_NAME_CUES = "我叫|名叫|本人姓名|本人|来电人|来电者|联系人|反映人|投诉人|举报人|诉求人|申请人|当事人|户主|姓名"
_CUED_GIVEN = f"(?:(?!{_TITLES}){_GIVEN})"
_CUED_NAME = re.compile(
    f"((?:{_NAME_CUES})[:： ]?){_SURNAME}(?:某{{1,2}}|{_CUED_GIVEN}{{1,2}})"
    f"(?=$|[^\u4e00-\u9fff]|{_TITLES}|反映|投诉|举报|来电|家住|住|现住|系|是|在|的|电话|手机|联系|身份证|男|女|今年|现年"
    "|年|于|因|称|说)"
)
# the most common full names in China (the Ministry of Public Security's 2019 list, less those that run into a
# common word: 王刚才, 张平时, 李超市): masked wherever they appear, but not inside a word (紧张军训)
_COMMON_NAMES = re.compile(
    "(?<![紧主扩夸慌开伸铺嚣])(?:张伟|王伟|王芳|李伟|李娜|张敏|李静|王静|刘伟|王秀英|张丽|李秀英|王丽|张静|张秀英|李强|王敏|李敏|王磊|刘洋|王艳|"
    "王勇|李军|张勇|李杰|张杰|张磊|王强|李娟|王军|张艳|张涛|王涛|李艳|李明|李勇|王娟|刘杰|刘敏|李霞|李丽|张军|王杰|"
    "张强|王秀兰|刘芳|张燕|刘艳|刘军|王辉|王燕|陈静|刘勇|李玲|李桂英|王丹|李丹|李萍|王鹏|刘涛|陈伟|"
    "张华|刘静|李涛|王桂英|张秀兰|李红|刘丽|张桂英|王玉兰|李燕|张鹏|李秀兰|王玲|张玲|李华|王飞|张玉兰|王桂兰|"
    "王英|刘强|陈秀英|李英|李辉|李梅|陈勇|王鑫|李芳|张桂兰|李波|杨勇|王霞|李桂兰|王斌|李鹏|张莉|张辉|张宇|刘娟|李斌|"
    f"王浩|陈杰|王凯|陈丽|陈敏|王秀珍|李玉兰|李秀珍|王萍|张波|王桂珍|张红)(?![{_PLACE_AFTER}])"
)


def _mask_contacts(text: str) -> str:
    """What versions 1 and 2 mask: ID numbers, e-mail addresses, mobile and landline numbers."""
    text = _EMAIL.sub(EMAIL, text) if "@" in text else text
    text = _ID.sub(ID_NUMBER, text)
    text = _MOBILE.sub(PHONE, text)
    return _LANDLINE.sub(PHONE, text)


def _mask_personal(text: str) -> str:
    """What version 3 masks: the contacts, then card numbers, plates, addresses and person names."""
    text = _EMAIL.sub(EMAIL, text) if "@" in text else text
    text = _ID.sub(ID_NUMBER, text)
    text = _CARD.sub(CARD, text)  # before phones: a card's groups of 4 must not be read as a phone number
    text = _MOBILE.sub(PHONE, text)
    text = _LANDLINE.sub(PHONE, text)
    text = _PLATE.sub(PLATE, text)
    text = _ADDRESS.sub(ADDRESS, text)
    text = _CUED_NAME.sub(lambda m: m.group(1) + NAME, text)
    text = _TITLED_NAME.sub(NAME, text)
    return _COMMON_NAMES.sub(NAME, text)


def mask_pii(text: str) -> str:
    """Replace ID numbers, e-mail addresses, phone numbers, card numbers, licence plates, house/unit/room numbers
    and person names with placeholder tokens (what the newest normalization masks).

    Works on raw or normalized text; used on its own wherever a complaint is shown to a person (reports).
    """
    return _mask_personal(text)


def normalize(text: str, version: int = NORMALIZATION_VERSION) -> str:
    """NFKC (full-width to half-width), HTML removed, whitespace collapsed, lower-cased, personal data masked;
    from ``version`` 2, Excel's ``_xHHHH_`` escapes decoded and invisible format characters removed first; from
    ``version`` 3, person names, house/building/unit/room numbers, licence plates and card numbers masked too."""
    if version not in (1, 2, 3):
        raise ValueError(f"unknown normalization version {version!r}; this release knows 1 to {NORMALIZATION_VERSION}")
    if version >= 2:
        if "_x" in text:
            text = _OOXML_ESCAPE.sub(_unescape_ooxml, text)
        text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    if "<" in text or "&" in text:
        text = html.unescape(_TAG.sub(" ", text))
        text = _TAG.sub(" ", text)  # entities such as &lt;br&gt; may unescape into tags
    text = _SPACE.sub(" ", text).strip().lower()
    return _mask_contacts(text) if version < 3 else _mask_personal(text)


def is_blank(text: str) -> bool:
    """Nothing for a model to read: the text is empty, or whitespace, invisible format characters (zero-width
    space, BOM, direction marks) and control characters (NUL) only, as normalized (so markup alone, ``<br>``,
    and Excel's ``_x000D_`` escapes of line breaks are blank too).  Training drops such rows ("empty text") and
    prediction refuses them, so both treat them alike."""
    for ch in text:
        if unicodedata.category(ch)[0] not in "ZC":
            break
    else:
        return True
    if "<" not in text and "&" not in text and "_x" not in text:
        return False  # normalization removes no visible character from this text
    return all(unicodedata.category(ch)[0] in "ZC" for ch in normalize(text))


def _unescape_ooxml(m: re.Match[str]) -> str:
    code = int(m.group(1), 16)
    return m.group(0) if 0xD800 <= code <= 0xDFFF else chr(code)  # a lone surrogate is no character: kept


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_dictionary(path: str | Path, kind: str) -> str:
    """Read a user dictionary or stop-word file as UTF-8 text, with a clear error if it is unusable."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DictionaryError(f"{kind} file not found: {path}") from None
    except UnicodeDecodeError:
        raise DictionaryError(f"{kind} file {path} is not UTF-8; save it as UTF-8 and retry") from None
    if kind == "user dictionary":
        _check_user_dict(content, path)
    return content


def _check_user_dict(content: str, source: Path | str) -> None:
    # jieba's format: word [freq] [tag], one per line
    for lineno, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        if not _USER_DICT_LINE.match(line.strip()):
            raise DictionaryError(
                f"{source}:{lineno}: expected 'word [frequency] [tag]' with an integer frequency, got {line!r}"
            )


_USER_DICT_LINE = re.compile(r"^\S+( [0-9]+)?( [a-z]+)?$")
SEGMENTERS = ("jieba", "rjieba", "auto")
_JIEBA_CACHE: dict[tuple[str, str], Any] = {}
# jieba's own user-dictionary line format (jieba/__init__.py ``re_userdict``): word, optional freq, optional tag
_USER_DICT_ENTRY = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")
_jieba_init_lock = threading.Lock()


class ComplaintTokenizer:
    """A picklable jieba tokenizer that owns its own ``jieba.Tokenizer``.

    The pickled state is only configuration (the user dictionary and stop words as text, with their hashes,
    and the HMM flag), so a model segments the same on every machine; the jieba instance is rebuilt lazily
    after unpickling.  Single-character tokens are kept; whitespace and punctuation-only tokens are not.

    Parameters
    ----------
    user_dict : text of a jieba user dictionary (``word [freq] [tag]`` per line), or None.
    stop_words : text with one stop word per line, or None.
    hmm : let jieba's HMM guess words that are in no dictionary.
    segmenter : "jieba", "rjieba" (jieba-rs binding: same dictionary and tokens, ~15x faster; the user
        dictionary is loaded entry by entry with ``add_word``, as jieba's ``load_userdict`` does) or "auto"
        (rjieba when it is installed, else jieba).  "auto" is resolved in each process, so a model trained
        with rjieba still loads and segments the same where rjieba is missing (tests/test_segmenter.py pins the
        agreement, with and without a user dictionary).
    """

    def __init__(
        self,
        user_dict: str | None = None,
        stop_words: str | None = None,
        hmm: bool = False,
        segmenter: str = "jieba",
    ) -> None:
        if segmenter not in SEGMENTERS:
            raise ValueError(f"segmenter must be one of {list(SEGMENTERS)}, got {segmenter!r}")
        if user_dict:
            user_dict = user_dict.lstrip("\ufeff")  # a BOM would glue itself to the first word
            _check_user_dict(user_dict, "user dictionary")
        self.user_dict = user_dict or None
        self.stop_words = stop_words or None
        self.hmm = hmm
        self.segmenter = segmenter
        self._stop = frozenset(w.strip() for w in (stop_words or "").splitlines() if w.strip())
        self._jieba: Any = None
        self._rjieba = False

    @classmethod
    def from_files(
        cls,
        user_dict: str | Path | None = None,
        stop_words: str | Path | None = None,
        hmm: bool = False,
        segmenter: str = "jieba",
    ) -> ComplaintTokenizer:
        return cls(
            user_dict=read_dictionary(user_dict, "user dictionary") if user_dict else None,
            stop_words=read_dictionary(stop_words, "stop-word") if stop_words else None,
            hmm=hmm,
            segmenter=segmenter,
        )

    @property
    def user_dict_sha256(self) -> str | None:
        return sha256_text(self.user_dict) if self.user_dict else None

    @property
    def stop_words_sha256(self) -> str | None:
        return sha256_text(self.stop_words) if self.stop_words else None

    def _segmenter(self) -> Any:
        if self._jieba is None:
            with _jieba_init_lock:
                if self._jieba is None:
                    self._jieba = self._build()
        return self._jieba

    @property
    def engine(self) -> str:
        """The segmenter this process actually uses: "jieba" or "rjieba" ("auto" resolved)."""
        if self.segmenter != "auto":
            return self.segmenter
        try:
            import rjieba  # noqa: F401
        except ImportError:
            return "jieba"
        return "rjieba"

    def _build(self) -> Any:
        engine = self.engine
        self._rjieba = engine == "rjieba"
        # one segmenter per engine, dictionary and process: loading jieba's dictionary takes ~1 s, and worker
        # processes that analyze chunks of a large batch would otherwise pay it for every chunk.  An initialized
        # segmenter is only read by ``cut``, so sharing it is safe.
        key = (engine, self.user_dict_sha256 or "")
        seg = _JIEBA_CACHE.get(key)
        if seg is None:
            seg = _new_rjieba(self.user_dict) if self._rjieba else _new_jieba(self.user_dict)
            _JIEBA_CACHE[key] = seg
        return seg

    def warm_up(self) -> ComplaintTokenizer:
        """Load the dictionaries now (at service start) instead of on the first request."""
        self._segmenter()
        return self

    def cut(self, normalized: str) -> list[str]:
        """Segment an already normalized text into tokens."""
        seg = self._segmenter()
        stop = self._stop
        out: list[str] = []
        for piece in _PLACEHOLDER_SPLIT.split(normalized) if "<" in normalized else (normalized,):
            if not piece:
                continue
            if piece in PLACEHOLDERS:
                out.append(piece)
                continue
            words: Iterable[str] = seg.cut(piece, self.hmm) if self._rjieba else seg.cut(piece, HMM=self.hmm)
            for w in words:
                w = w.strip()
                if w and (w.isalnum() or not _is_punct(w)) and w not in stop:
                    out.append(w)
        return out

    def __call__(self, text: str) -> list[str]:
        """Normalize then segment: what the vectorizer and the user see as the tokens of a complaint."""
        return self.cut(normalize(text))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_jieba"] = None  # holds an RLock; rebuilt lazily from the configuration
        state.pop("_rjieba", None)  # "auto" is resolved again where the model is loaded
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        user_dict = "sha256:" + (self.user_dict_sha256 or "")[:12] if self.user_dict else None
        return (
            f"ComplaintTokenizer(user_dict={user_dict}, "
            f"stop_words={len(self._stop)}, hmm={self.hmm}, segmenter={self.segmenter!r})"
        )


def _new_jieba(user_dict: str | None) -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer()
    tok.initialize()
    if user_dict:
        tok.load_userdict(io.StringIO(user_dict))
    return tok


def _new_rjieba(user_dict: str | None) -> Any:
    """Its own ``rjieba.Jieba`` (never the module's shared default), with the user dictionary added the way
    jieba's ``load_userdict`` adds it: a missing frequency is left to ``suggest_freq`` in both."""
    import rjieba

    seg = rjieba.Jieba()
    for lineno, line in enumerate((user_dict or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = _USER_DICT_ENTRY.match(line)
        if match is None:  # refused when the tokenizer was made (_check_user_dict); kept as a guard
            raise DictionaryError(f"user dictionary line {lineno} is not 'word [frequency] [tag]': {line!r}")
        word, freq, tag = match.groups()
        seg.add_word(word.strip(), int(freq) if freq else None, tag.strip() if tag else None)
    return seg


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PSZ" for ch in token)
