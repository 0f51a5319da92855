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
    "mask_pii",
    "ComplaintTokenizer",
    "read_dictionary",
    "sha256_text",
]

# Placeholder tokens that replace personal data.  Upper-case ASCII in angle brackets: normalization lower-cases
# everything before masking, so a caller cannot forge one, and the tokenizer keeps each as a single token.
PHONE, ID_NUMBER, EMAIL = "<PHONE>", "<ID>", "<EMAIL>"
PLACEHOLDERS = (PHONE, ID_NUMBER, EMAIL)

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
# (before NFKC).  A model keeps the version it was trained with (ComplaintVectorizer.normalization), so a
# newer release never changes how an older model reads text
NORMALIZATION_VERSION = 2
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")


def mask_pii(text: str) -> str:
    """Replace ID numbers, e-mail addresses and mobile/landline numbers with placeholder tokens.

    Works on raw or normalized text; used on its own wherever a complaint is shown to a person (reports).
    """
    text = _EMAIL.sub(EMAIL, text) if "@" in text else text
    text = _ID.sub(ID_NUMBER, text)
    text = _MOBILE.sub(PHONE, text)
    return _LANDLINE.sub(PHONE, text)


def normalize(text: str, version: int = NORMALIZATION_VERSION) -> str:
    """NFKC (full-width to half-width), HTML removed, whitespace collapsed, lower-cased, personal data masked;
    from ``version`` 2, Excel's ``_xHHHH_`` escapes decoded and invisible format characters removed first."""
    if version == 2:
        if "_x" in text:
            text = _OOXML_ESCAPE.sub(_unescape_ooxml, text)
        text = _INVISIBLE.sub("", text)
    elif version != 1:
        raise ValueError(f"unknown normalization version {version!r}; this release knows 1 to {NORMALIZATION_VERSION}")
    text = unicodedata.normalize("NFKC", text)
    if "<" in text or "&" in text:
        text = html.unescape(_TAG.sub(" ", text))
        text = _TAG.sub(" ", text)  # entities such as &lt;br&gt; may unescape into tags
    text = _SPACE.sub(" ", text).strip().lower()
    return mask_pii(text)


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
