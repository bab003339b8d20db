"""Pair predictions with benchmark questions, and count what did not pair, so no score is silently off.

Rules (the same for every benchmark):
- A prediction is matched by its id; if the id is not a question id, by the question's aliases and by
  the benchmark's alternative keys (e.g. LLaVA's MME files: image id + question text).
- Two predictions for the same question: `DataError` naming both lines (which one to score is unknowable).
- Predictions that match no question ("extra"): counted, listed, and left out of the score. If *none*
  matches, the files do not belong together: `DataError`.
- Questions without a prediction ("missing"): see `apply_missing_policy`.
- Empty answers (only whitespace): kept, counted as `empty`, and scored as wrong (never parsed: the
  official POPE rule would read "" as "yes").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import Sample
from deco.eval.predictions import Prediction

MISSING_POLICIES = ("wrong", "skip", "error")
_SHOW = 5  # ids listed in messages and reports


@dataclass
class Matching:
    """Result of pairing: every question with its prediction (or None), and the unmatched predictions."""

    pairs: list[tuple[Sample, Prediction | None]]
    extra: list[Prediction] = field(default_factory=list)

    @property
    def missing(self) -> list[Sample]:
        """Questions that have no prediction."""
        return [s for s, p in self.pairs if p is None]

    @property
    def empty(self) -> list[Prediction]:
        """Matched predictions whose answer is empty or whitespace."""
        return [p for _, p in self.pairs if p is not None and not p.answer.strip()]


def match_predictions(
    samples: list[Sample],
    preds: list[Prediction],
    preds_path: str | Path,
    alt_keys: Callable[[Prediction], Iterable[str]] | None = None,
) -> Matching:
    """Pair each prediction with one question; see the module docstring for the rules."""
    lookup: dict[str, str] = {s.qid: s.qid for s in samples}
    alias_owner: dict[str, str] = {}
    ambiguous: set[str] = set()
    for s in samples:
        for alias in s.aliases:
            if alias in lookup:
                continue  # a real question id always wins over an alias
            owner = alias_owner.setdefault(alias, s.qid)
            if owner != s.qid:
                ambiguous.add(alias)  # names two different questions, so it identifies neither
    lookup.update({a: q for a, q in alias_owner.items() if a not in ambiguous})
    by_qid: dict[str, Prediction] = {}
    extra: list[Prediction] = []
    for p in preds:
        keys = [p.qid, *(alt_keys(p) if alt_keys else ())]
        target = next((lookup[k] for k in keys if k in lookup), None)
        if target is None:
            extra.append(p)
            continue
        if target in by_qid:
            first = by_qid[target]
            raise DataError(f"{preds_path}: lines {first.line} and {p.line} both answer question {target!r}; "
                            "keep one prediction per question")
        by_qid[target] = p
    if not by_qid:
        sample_ids = ", ".join(repr(s.qid) for s in samples[:_SHOW])
        pred_ids = ", ".join(repr(p.qid) for p in preds[:_SHOW])
        raise DataError(f"{preds_path}: none of the {len(preds)} predictions matches a question of the annotations "
                        f"(prediction ids {pred_ids}; question ids {sample_ids}): wrong annotation file or "
                        "wrong benchmark?")
    return Matching(pairs=[(s, by_qid.get(s.qid)) for s in samples], extra=extra)


def apply_missing_policy(
    matching: Matching, policy: str, preds_path: str | Path, submission: bool = False
) -> tuple[list, list[str]]:
    """Decide what a missing prediction means; return (pairs to score, warnings).

    - "wrong" (default, what the official scripts do for the full benchmark): the question stays in the
      denominator and counts as answered wrongly (in a submission file: written with an empty answer,
      which the server scores as wrong, as LLaVA's VQAv2 converter does).
    - "skip": the question is left out; the score covers only answered questions (partial runs; a
      partial submission file, which servers may refuse).
    - "error": raise a DataError listing the first missing ids.
    Empty answers are never dropped: they are scored as wrong under every policy.
    """
    if policy not in MISSING_POLICIES:
        raise DataError(f"unknown missing-prediction policy {policy!r}; choose one of {', '.join(MISSING_POLICIES)}")
    warnings: list[str] = []
    missing = matching.missing
    total = len(matching.pairs)
    if missing:
        ids = ", ".join(repr(s.qid) for s in missing[:_SHOW])
        if policy == "error":
            hint = ("use missing='wrong' (empty answers) or 'skip' (left out)" if submission
                    else "score with missing='wrong' or 'skip'")
            raise DataError(f"{preds_path}: {len(missing)} of {total} questions have no prediction (first: {ids}); "
                            f"finish the run, or {hint}")
        if submission:
            what = "written with an empty answer" if policy == "wrong" else "left out: the submission is partial"
        else:
            what = "scored as wrong" if policy == "wrong" else "left out of the score"
        warnings.append(f"{len(missing)} of {total} questions have no prediction ({what}); first: {ids}")
    if matching.extra:
        ids = ", ".join(repr(p.qid) for p in matching.extra[:_SHOW])
        warnings.append(f"{len(matching.extra)} predictions match no question and were ignored; first: {ids}")
    if matching.empty:
        warnings.append(f"{len(matching.empty)} predictions have an empty answer (scored as wrong)")
    pairs = [(s, p) for s, p in matching.pairs if p is not None] if policy == "skip" else list(matching.pairs)
    if not pairs:
        raise DataError(f"{preds_path}: nothing left to {'write' if submission else 'score'}")
    return pairs, warnings


def answers_of(pairs: list[tuple[Sample, Prediction | None]]) -> list[tuple[Sample, str | None]]:
    """Turn (sample, prediction) pairs into (sample, answer) with None for missing or empty answers."""
    return [(s, p.answer if p is not None and p.answer.strip() else None) for s, p in pairs]
