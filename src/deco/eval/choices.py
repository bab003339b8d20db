"""Find which option letter a free-form reply chose (MMBench, ScienceQA, SEED-Bench).

Tried in order, the first rule that gives one valid letter wins:
1. the whole reply is a letter, possibly wrapped: "B", "b", "B.", "(B)", "B)", "[B]", "B:";
2. the reply starts with a marked letter: "B. text", "(B) text", "B) text", "B: text";
3. an explicit statement: "The answer is B", "Answer: (B)", "the correct option is B.";
4. exactly one valid uppercase letter stands as a word of its own (punctuation around it removed, as
   VLMEvalKit does), so "A" inside "Apple" or "CAT" never counts; "A" followed by a lowercase word
   ("A dog ...") reads as the article and does not count;
5. only when option texts are given (MMBench): the reply equals one option's text, or exactly one option's
   text occurs in it as whole words (an option found only inside a longer matching option is ignored).
Several different letters, or none, give None: the reply is unparsed and scored as wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_WRAPPED = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:)]?")
_LEADING = re.compile(r"(?:\(([A-Z])\)|([A-Z])[.):])(?=\s|$)")
_STATED = re.compile(
    r"(?i:\b(?:answer|option|choice)\s*(?:is|would be|should be)?\s*:?\s*)\(?([A-Z])\)?(?![A-Za-z0-9])"
)
_SPLIT_CHARS = ".()[],:;!*#{}\"'"


def extract_choice(reply: str, n_options: int, option_texts: Sequence[str] | None = None) -> str | None:
    """Return the option letter (A, B, ...) the reply chose among `n_options`, or None if unclear."""
    letters = string.ascii_uppercase[:n_options]
    text = reply.strip()
    if not text:
        return None
    m = _WRAPPED.fullmatch(text)
    if m:
        letter = m.group(1).upper()
        return letter if letter in letters else None
    m = _LEADING.match(text)
    if m:
        letter = m.group(1) or m.group(2)
        if letter in letters:
            return letter
    stated = {x for x in _STATED.findall(text) if x in letters}
    if len(stated) == 1:
        return stated.pop()
    standalone = _standalone_letters(text, letters)
    if len(standalone) == 1:
        return standalone.pop()
    if option_texts:
        return _match_option_text(text, option_texts, letters)
    return None


def _standalone_letters(text: str, letters: str) -> set[str]:
    """Valid uppercase letters that appear as whole tokens, skipping the article 'A' ("A dog")."""
    for ch in _SPLIT_CHARS:
        text = text.replace(ch, " ")
    tokens = text.split()
    found = set()
    for i, tok in enumerate(tokens):
        if tok not in letters:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "A" and nxt[:1].islower():
            continue
        found.add(tok)
    return found


def _clean(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _match_option_text(reply: str, option_texts: Sequence[str], letters: str) -> str | None:
    reply_c = _clean(reply)
    options = [(letters[i], _clean(str(t))) for i, t in enumerate(option_texts[: len(letters)])]
    options = [(letter, t) for letter, t in options if t]
    exact = [letter for letter, t in options if t == reply_c]
    if len(exact) == 1:
        return exact[0]
    spans: dict[str, list[tuple[int, int]]] = {}
    for letter, t in options:
        found = [(m.start(), m.end()) for m in re.finditer(rf"(?<!\w){re.escape(t)}(?!\w)", reply_c)]
        if found:
            spans[letter] = found

    def inside_another(letter: str) -> bool:
        # Every occurrence lies within an occurrence of a different, longer option ("red" in "red and blue").
        return all(
            any(o != letter and a <= s and e <= b and (b - a) > (e - s) for o, occ in spans.items() for a, b in occ)
            for s, e in spans[letter]
        )

    kept = [letter for letter in spans if not inside_another(letter)]
    return kept[0] if len(kept) == 1 else None
