"""MME: reader for MME_Benchmark_release_version, and acc / acc+ per subtask with the two totals.

Each image has two yes/no questions. A reply is lowercased and read as MME's calculation.py does: "yes"
or "no" as a whole, else "yes" if its first 4 characters contain "yes", else "no" if they contain "no"
("not ..." reads as no), else "other", which is wrong for either label. Per subtask: acc = right
questions / questions, acc+ = images with every question right / images, both x100; score = acc + acc+.
Perception = sum of the 10 perception subtask scores (max 2000), cognition = sum of the 4 cognition ones
(max 800). A missing or empty reply counts as "other".
"""

from __future__ import annotations

import re
from pathlib import Path

from deco.errors import DataError
from deco.eval.annotations import Sample, read_jsonl, require_keys, unique_qids
from deco.eval.metrics import percent
from deco.eval.predictions import Prediction
from deco.eval.textfile import read_utf8, text_lines

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_FOLDER = "MME_Benchmark_release_version"
MME_SOURCE = ("https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation "
              "(or the lmms-lab/MME copy on the Hugging Face Hub)")
_IMAGE_EXTS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
# Instructions LLaVA's prompts add (or omit) around the question; not part of the question itself.
_SUFFIXES = ("Answer the question using a single word or phrase.", "Please answer yes or no.", "<image>")


def load_mme(path: str | Path) -> list[Sample]:
    """Read the MME release folder (one folder per subtask) or the simplified JSONL form.

    Subtask folders come in two layouts, both handled: images/ + questions_answers_YN/ with one
    <image>.txt per image, or images and .txt files side by side. Each .txt line is "question<TAB>Yes|No".
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".jsonl":
        return _load_simple(p)
    if not p.is_dir():
        raise DataError(f"mme: {p} is not a folder; expected the {MME_FOLDER} folder from {MME_SOURCE}")
    samples: list[Sample] = []
    for task_dir in sorted(d for d in p.iterdir() if d.is_dir()):
        if (task_dir / "images").is_dir():
            image_dir, qa_dir = task_dir / "images", task_dir / "questions_answers_YN"
            if not qa_dir.is_dir():
                raise DataError(f"mme: {task_dir} has images/ but no questions_answers_YN/ folder")
        else:
            image_dir = qa_dir = task_dir
        samples.extend(_read_task(p, task_dir.name, image_dir, qa_dir))
    if not samples:
        raise DataError(f"mme: {p} holds no subtask folders with question .txt files; expected the {MME_FOLDER} "
                        f"layout (e.g. {p}/existence/...txt) from {MME_SOURCE}")
    return unique_qids(samples, "mme", p)


def _read_task(root: Path, task: str, image_dir: Path, qa_dir: Path) -> list[Sample]:
    samples = []
    for txt in sorted(qa_dir.glob("*.txt")):
        stem = txt.stem
        image = next((image_dir / (stem + e) for e in _IMAGE_EXTS if (image_dir / (stem + e)).is_file()), None)
        image_rel = image.relative_to(root).as_posix() if image else None
        lines = [(n, ln) for n, ln in enumerate(text_lines(read_utf8(txt, "mme: ")), start=1) if ln.strip()]
        for k, (n, line) in enumerate(lines):
            parts = line.strip().split("\t")
            if len(parts) != 2 or parts[1].strip().lower() not in ("yes", "no"):
                raise DataError(f"mme: {txt} line {n} is not 'question<TAB>Yes|No': {line!r}")
            question = parts[0].strip()
            samples.append(Sample(
                qid=f"{task}/{stem}#{k}", question=question, image=image_rel, answers=(parts[1].strip().lower(),),
                meta={"subtask": task, "image_group": f"{task}/{stem}"},
                aliases=(f"{task}/{stem}|{question_key(question)}",),
            ))
    return samples


def _load_simple(p: Path) -> list[Sample]:
    """Simplified JSONL: {question_id, question, image, answer: yes/no, category}; pairs share an image."""
    samples = []
    for i, r in enumerate(read_jsonl(p, "mme")):
        require_keys(r, ("question_id", "question", "image", "answer", "category"), "mme", p, f"line {i + 1}")
        label = str(r["answer"]).strip().lower()
        if label not in ("yes", "no"):
            raise DataError(f"mme: {p} line {i + 1} has answer {r['answer']!r}; expected yes or no")
        samples.append(Sample(
            qid=str(r["question_id"]), question=str(r["question"]), image=str(r["image"]), answers=(label,),
            meta={"subtask": str(r["category"]), "image_group": f"{r['category']}/{r['image']}"},
        ))
    return unique_qids(samples, "mme", p)


def question_key(text: str) -> str:
    """The question without LLaVA's added instructions, whitespace collapsed, lowercased (for matching)."""
    for s in _SUFFIXES:
        text = text.replace(s, " ")
    return " ".join(text.split()).lower()


def mme_alt_keys(pred: Prediction) -> list[str]:
    """LLaVA's MME files give both questions of an image the id "<subtask>/<image file>": add the question."""
    if not pred.prompt:
        return []
    parts = pred.qid.split("/")
    stem = re.sub(r"\.[A-Za-z]+$", "", parts[-1])
    return [f"{parts[0]}/{stem}|{question_key(pred.prompt)}"]


def parse_yes_no(reply: str) -> str:
    """MME's rule: the lowercased reply is yes/no, or its first 4 characters contain yes / no, else other."""
    text = reply.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def score_mme(pairs: list[tuple[Sample, str | None]]) -> dict:
    """acc, acc+ and their sum per subtask; perception and cognition totals."""
    tasks: dict[str, list] = {}
    for pair in pairs:
        tasks.setdefault(pair[0].meta["subtask"], []).append(pair)
    subtasks = {}
    for task, items in tasks.items():
        images: dict[str, bool] = {}
        right = unparsed = 0
        for sample, reply in items:
            pred = parse_yes_no(reply) if reply is not None else "other"
            ok = pred == sample.answers[0]
            right += ok
            unparsed += pred == "other"
            group = sample.meta["image_group"]
            images[group] = images.get(group, True) and ok
        acc, acc_plus = percent(right, len(items)), percent(sum(images.values()), len(images))
        subtasks[task] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "questions": len(items),
                          "images": len(images), "other": unparsed}
    order = [t for t in PERCEPTION + COGNITION if t in subtasks] + sorted(set(subtasks) - set(PERCEPTION + COGNITION))
    warnings = []
    totals = {}
    for name, members in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [t for t in members if t in subtasks]
        totals[name] = sum(subtasks[t]["score"] for t in present)
        if present and len(present) < len(members):
            warnings.append(f"{name} total sums {len(present)} of {len(members)} subtasks (others absent)")
    uneven = [g for g, n in _group_sizes(pairs).items() if n != 2]
    if uneven:
        warnings.append(f"{len(uneven)} images do not have exactly 2 questions (e.g. {uneven[0]}); acc+ needs "
                        "all of an image's questions right")
    return {**totals, "subtasks": {t: subtasks[t] for t in order}, "warnings": warnings}


def _group_sizes(pairs: list[tuple[Sample, str | None]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for sample, _ in pairs:
        sizes[sample.meta["image_group"]] = sizes.get(sample.meta["image_group"], 0) + 1
    return sizes
