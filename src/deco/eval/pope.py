"""POPE: reader for the coco_pope_{random,popular,adversarial}.json label files, and the yes/no metrics.

A reply is read as LLaVA's eval_pope.py does: keep the text before the first '.', drop commas, split on
spaces; it is "no" if one of the words is "No", "not" or "no", otherwise "yes" (so "Yes, it is not..." is
"no", and a reply with neither word is "yes"). Per split: accuracy, precision, recall and F1 with "yes"
as the positive class, and the yes-ratio, all x100; then the mean over the splits present. LLaVA-1.5
reports the mean F1.

A missing or empty reply is neither yes nor no: it counts as wrong in accuracy, as a missed positive in
recall (recall = TP / all "yes" labels), and not at all in precision; the yes-ratio is over all
questions. With a complete, non-empty prediction file this is exactly the official computation.
"""

from __future__ import annotations

import re
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import (
    Sample,
    read_json_or_lines,
    read_jsonl,
    require_keys,
    unique_qids,
    wrong_format,
)
from deco.eval.metrics import percent

SPLITS = ("random", "popular", "adversarial")
POPE_SOURCE = "https://github.com/AoiDragon/POPE (output/coco/coco_pope_<split>.json)"
LLAVA_QUESTIONS = "llava_pope_test.jsonl"


def pope_file(split: str) -> str:
    """Published label file name of a POPE split."""
    return f"coco_pope_{split}.json"


def load_pope(path: str | Path) -> list[Sample]:
    """Read a folder holding coco_pope_<split>.json files (any of the three), one such file, or simplified JSONL.

    Question ids are "<split>/<question_id>" (POPE numbers each split from 1). If LLaVA's question file
    llava_pope_test.jsonl lies in the same folder, LLaVA's own question ids are accepted too.
    """
    p = Path(path)
    files: list[tuple[str | None, Path]]
    if p.is_dir():
        files = [(s, p / pope_file(s)) for s in SPLITS if (p / pope_file(s)).is_file()]
        if not files:
            raise DataError(f"pope: folder {p} holds none of {', '.join(pope_file(s) for s in SPLITS)}; "
                            f"get them from {POPE_SOURCE}")
        folder = p
    elif p.is_file():
        m = re.fullmatch(r".*_pope_(\w+)\.json", p.name)
        files = [(m.group(1) if m else None, p)]
        folder = p.parent
    else:
        raise DataError(f"pope: {p} does not exist; expected a folder with {pope_file('random')} (and the other "
                        f"splits) from {POPE_SOURCE}")
    llava_ids = _llava_question_ids(folder / LLAVA_QUESTIONS)
    samples = []
    for split, f in files:
        rows = read_json_or_lines(f, "pope")
        if isinstance(rows, dict):
            rows = [rows]  # a file with a single line parses as one object
        if not (isinstance(rows, list) and rows and isinstance(rows[0], dict) and "label" in rows[0]):
            raise wrong_format("pope", f, "one object per line with question_id, image, text, label", rows)
        for i, r in enumerate(rows):
            require_keys(r, ("question_id", "image", "label"), "pope", f, f"line {i + 1}")
            text = r.get("text", r.get("question"))
            label = str(r["label"]).strip().lower()
            if text is None or label not in ("yes", "no"):
                raise DataError(f"pope: {f} line {i + 1} needs a 'text' question and a 'label' of yes/no, "
                                f"found label {r['label']!r}")
            row_split = split or r.get("category") or "all"
            key = (row_split, str(r["image"]), str(text))
            # With LLaVA's ids available, the bare per-split ids would clash with them: use only LLaVA's.
            aliases = (llava_ids[key],) if key in llava_ids else () if llava_ids else (str(r["question_id"]),)
            samples.append(Sample(
                qid=f"{row_split}/{r['question_id']}", question=str(text), image=str(r["image"]),
                answers=(label,), meta={"split": row_split}, aliases=aliases,
            ))
    return unique_qids(samples, "pope", p)


def _llava_question_ids(path: Path) -> dict[tuple[str, str, str], str]:
    """(split, image, question) -> LLaVA question id, from llava_pope_test.jsonl if present."""
    if not path.is_file():
        return {}
    ids = {}
    for i, r in enumerate(read_jsonl(path, "pope")):
        require_keys(r, ("question_id", "image", "text", "category"), "pope", path, f"line {i + 1}")
        ids[(str(r["category"]), str(r["image"]), str(r["text"]))] = str(r["question_id"])
    return ids


def parse_yes_no(reply: str) -> str:
    """LLaVA's POPE rule: first sentence, commas dropped, "no" if the words No/not/no occur, else "yes"."""
    text = reply.split(".")[0] if "." in reply else reply
    words = text.replace(",", "").split(" ")  # split on spaces only, as the official script does
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def split_metrics(pairs: list[tuple[Sample, str | None]]) -> dict:
    """Confusion counts and x100 accuracy, precision, recall, F1, yes-ratio for one split."""
    tp = fp = tn = fn = unanswered = 0
    positives = 0
    for sample, reply in pairs:
        label = sample.answers[0]
        positives += label == "yes"
        if reply is None:
            unanswered += 1
            continue
        pred = parse_yes_no(reply)
        if pred == "yes":
            tp += label == "yes"
            fp += label == "no"
        else:
            tn += label == "no"
            fn += label == "yes"
    n = len(pairs)
    precision = percent(tp, tp + fp)
    recall = percent(tp, positives)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n, "TP": tp, "FP": fp, "TN": tn, "FN": fn, "unanswered": unanswered,
        "accuracy": percent(tp + tn, n), "precision": precision, "recall": recall, "f1": f1,
        "yes_ratio": percent(tp + fp, n),
    }


def score_pope(pairs: list[tuple[Sample, str | None]]) -> dict:
    """Per-split POPE metrics and their mean over the splits present."""
    splits: dict[str, list] = {}
    for pair in pairs:
        splits.setdefault(pair[0].meta["split"], []).append(pair)
    order = [s for s in SPLITS if s in splits] + sorted(s for s in splits if s not in SPLITS)
    per_split = {s: split_metrics(splits[s]) for s in order}
    metrics: dict = {}
    for key in ("f1", "accuracy", "precision", "recall", "yes_ratio"):
        metrics[f"{key}_mean"] = sum(m[key] for m in per_split.values()) / len(per_split)
    metrics["per_split"] = per_split
    return metrics
