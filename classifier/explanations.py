"""Explanations a person reads: the words and n-grams that pushed a complaint toward a label, each once.

A linear head's push on one complaint is a sum over the complaint's features: words, word bigrams and char
1-3-grams, and the same of its first characters (the lead).  Listed as they are, single characters lead (水
from both 九水路 and 停水) and one place shows up several times (the word, the same string as a char n-gram,
and both again from the lead).  ``readable_terms`` turns the features into terms:

1. one term per string: a word, the same characters as a char n-gram, a word bigram written without its space,
   and the lead's copies of them are one term whose weight is their sum;
2. a term that is only a char n-gram is folded into the terms that contain it: the words (split evenly among
   them); else the shortest word bigrams; else the longest char n-grams (which gather the characters across a
   word boundary).  Shorter n-grams fold first, so what they gathered moves on with them;
3. the terms left are ranked by weight; the ``n_terms`` strongest positive ones are returned.

A term's weight is then the whole push of its characters, whichever features carried it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from .features import LEAD_PREFIX, WORD_PREFIX

__all__ = ["readable_terms"]

_WORD, _BIGRAM, _CHARS = 0, 1, 2  # how a person reads a term: a word, two words, characters


def readable_terms(contributions: Iterable[tuple[str, float]], n_terms: int = 10) -> list[dict[str, Any]]:
    """``[{"term", "kind", "weight"}]``, strongest first, from (feature name, contribution) pairs of one
    complaint (every feature it may name with a non-zero contribution, negative ones included: a term's weight
    is its net push).  Only these features' strings are shown: a term is a feature the caller let through
    (``ComplaintClassifier._explain_row`` passes those seen in at least ``min_df`` training cases), or, for
    punctuation in a char n-gram, a part of one ("陷," counts as "陷": every case holding "陷," holds "陷"; ","
    alone is left out).  ``kind``: "word" when the string is a word or two words of the text, else "char";
    "lead word" / "lead char" only for a string found among the first characters alone."""
    weight: dict[str, float] = {}
    level: dict[str, int] = {}
    body: dict[str, bool] = {}  # found outside the lead
    for name, value in contributions:
        lead = name.startswith(LEAD_PREFIX)
        if lead:
            name = name[len(LEAD_PREFIX):]
        if name.startswith(WORD_PREFIX):
            tokens = name[len(WORD_PREFIX):]
            term, kind = tokens.replace(" ", ""), _BIGRAM if " " in tokens else _WORD
        else:
            term, kind = _without_punctuation(name), _CHARS
            if not term:
                continue
        weight[term] = weight.get(term, 0.0) + value
        level[term] = min(level.get(term, _CHARS), kind)
        body[term] = body.get(term, False) or not lead
    inside: dict[str, list[str]] = {}  # a string -> the longer terms containing it
    for t in weight:
        n = len(t)
        for sub in {t[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n}:
            inside.setdefault(sub, []).append(t)
    for term in sorted((t for t in weight if level[t] == _CHARS), key=len):
        targets = _containers(inside.get(term, []), level)
        if targets:
            share = weight.pop(term) / len(targets)
            for t in targets:
                weight[t] += share
    ranked = sorted(((w, t) for t, w in weight.items() if w > 0), key=lambda wt: (-wt[0], wt[1]))[:n_terms]
    return [{"term": t, "kind": ("" if body[t] else "lead ") + ("char" if level[t] == _CHARS else "word"),
             "weight": round(w, 4)} for w, t in ranked]


def _without_punctuation(chars: str) -> str:
    return "".join(c for c in chars if unicodedata.category(c)[0] not in "PSZC")


def _containers(found: list[str], level: dict[str, int]) -> list[str]:
    """Of the terms containing a char n-gram, those it folds into: the words, else the shortest word bigrams,
    else the longest char n-grams."""
    if not found:
        return []
    words = [t for t in found if level[t] == _WORD]
    if words:
        return words
    phrases = [t for t in found if level[t] == _BIGRAM]
    if phrases:  # the shortest that holds it
        shortest = min(len(t) for t in phrases)
        return [t for t in phrases if len(t) == shortest]
    longest = max(len(t) for t in found)
    return [t for t in found if len(t) == longest]
