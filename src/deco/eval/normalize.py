"""Answer normalisation of the official VQA evaluator, and of the EvalAI processor LLaVA applies first.

Two processors exist and LLaVA's numbers go through both:
- `normalize_vqa`: what the official VQA evaluation (GT-Vision-Lab/VQA, vqaEval.py) does to a
  predicted answer before comparing it with the human answers.
- `normalize_evalai`: the EvalAI/MMF answer processor (LLaVA's m4c_evaluator) that LLaVA runs on every
  VQAv2/VizWiz answer before upload and that TextVQA's evaluator runs on both sides. It lowercases and
  drops ',' and '?' and splits "'s" before doing the same punctuation/digit/article steps.
The tables below are facts of those evaluators; their quirks are kept on purpose so scores agree.
"""

from __future__ import annotations

import re

# Contractions written without an apostrophe -> the form the human answers use. Keys with capitals
# ("Im", "Ive") can never match after lowercasing; the official table has them, so we do too.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

# Only whole words zero..ten (and "none") become digits; "eleven" stays a word.
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# '.', "'" and ':' are not in the list: periods have their own rule, apostrophes belong to contractions.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")
# A comma between digits ("1,000") switches every punctuation mark from "becomes a space" to "is deleted".
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a (mistyped) lookahead that always
# holds at a '.', so the rule is simply "drop a period not followed by a digit" ("3.5" keeps its point).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def process_punctuation(text: str) -> str:
    """Official punctuation step: marks next to a space (or any mark when a digit,digit occurs) are
    deleted, other marks become spaces; periods are dropped unless a digit follows."""
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        # The official test looks at the original text, not at the partly processed one.
        touches_space = (p + " ") in text or (" " + p) in text
        out = out.replace(p, "" if delete_all or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def process_digit_article(text: str) -> str:
    """Official word step: lowercase, number words -> digits, drop a/an/the, restore contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa(answer: str) -> str:
    """Normalise a predicted answer exactly as the official VQA evaluator does."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def normalize_evalai(answer: str) -> str:
    """Normalise an answer as the EvalAI/MMF processor does (LLaVA before upload; TextVQA both sides)."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return normalize_vqa(text)


def vqa_accuracy(prediction: str, human_answers: list[str] | tuple[str, ...]) -> float:
    """Mean over leaving out each human answer of min(#other humans who gave `prediction` / 3, 1).

    With 10 answers and m matches this is 0, .3, .6, .9, 1 for m = 0, 1, 2, 3, >=4.
    """
    n = len(human_answers)
    if n == 0:
        return 0.0
    m = sum(1 for a in human_answers if a == prediction)
    # Leaving out a matching answer leaves m-1 matches; leaving out another leaves m.
    return (m * min(1.0, (m - 1) / 3) + (n - m) * min(1.0, m / 3)) / n
