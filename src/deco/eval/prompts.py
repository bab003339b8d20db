"""The question text LLaVA-1.5 asks for each benchmark (haotian-liu/LLaVA, llava/eval and scripts/v1_5/eval), before the conversation template.

What each benchmark's user turn holds (LLaVA's eval question files and `model_vqa_*` scripts):

    vqav2, gqa, pope            QUESTION\\nAnswer the question using a single word or phrase.
    textvqa                     Question\\nReference OCR token: T1, T2, ...\\nAnswer the question using ...
    vizwiz                      QUESTION\\nWhen the provided information is insufficient, respond with
                                'Unanswerable'.\\nAnswer the question using a single word or phrase.
    mme                         QUESTION (its "Please answer yes or no." dropped) + the short-answer line
    mmbench                     [HINT\\n]QUESTION\\nA. ...\\nB. ...\\nAnswer with the option's letter ... directly.
    scienceqa                   [Context: HINT\\n]QUESTION\\nA. ...\\nB. ...\\nAnswer with the option's letter ...
    seed                        QUESTION\\nA. ...\\nB. ...\\nC. ...\\nD. ...\\nAnswer with the option's letter ...

The `<image>` marker is not part of this text: `deco.data.templates.render_prompt` puts `<image>\\n`
first, as LLaVA does. TextVQA follows LLaVA-1.5's `llava_textvqa_val_v051_ocr.jsonl`, the file its
reported 58.2 comes from: the question with its first letter capitalised, then a "Reference OCR token:"
line with the image's Rosetta OCR tokens joined by ", " (as published, case kept), then the short-answer
line. The OCR line needs `meta["ocr_tokens"]` (see `deco.eval.vqa`); an image without tokens gets no OCR
line (LLaVA's TextVQA scorer reads such two-line prompts too), and `ocr=False` leaves it out everywhere.
"""

from __future__ import annotations

import string

from deco.errors import DataError
from deco.eval.annotations import Sample

SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
_MME_SUFFIX = "Please answer yes or no."


def question_text(benchmark: str, sample: Sample, ocr: bool = True) -> str:
    """The user-turn text for one question of `benchmark`, LLaVA-1.5's wording, without `<image>`.

    `ocr` (TextVQA only): add the "Reference OCR token:" line when the sample has OCR tokens.
    """
    question = sample.question.strip()
    if not question:
        hint = " (VQAv2: put v2_OpenEnded_mscoco_val2014_questions.json beside the annotations)" \
            if benchmark == "vqav2" else ""
        raise DataError(f"{benchmark}: question {sample.qid} has no question text{hint}")
    if benchmark in ("vqav2", "gqa", "pope"):
        return f"{question}\n{SHORT_ANSWER}"
    if benchmark == "textvqa":
        tokens = sample.meta.get("ocr_tokens") if ocr else None
        ocr_line = f"\nReference OCR token: {', '.join(str(t) for t in tokens)}" if tokens else ""
        # TextVQA's questions are lower case; LLaVA's question file starts them with a capital.
        return f"{question[:1].upper()}{question[1:]}{ocr_line}\n{SHORT_ANSWER}"
    if benchmark == "vizwiz":
        return f"{question}\n{UNANSWERABLE}\n{SHORT_ANSWER}"
    if benchmark == "mme":
        return f"{question.replace(_MME_SUFFIX, '').strip()}\n{SHORT_ANSWER}"
    if benchmark == "mmbench":
        head = f"{sample.hint}\n{question}" if sample.hint else question
        return f"{head}\n{options_block(sample)}\n{MULTIPLE_CHOICE}"
    if benchmark == "scienceqa":
        head = f"Context: {sample.hint}\n{question}" if sample.hint else question
        return f"{head}\n{options_block(sample)}\n{MULTIPLE_CHOICE}"
    if benchmark == "seed":
        return f"{question}\n{options_block(sample)}\n{MULTIPLE_CHOICE}"
    raise DataError(f"no prompt rule for benchmark '{benchmark}'")


def options_block(sample: Sample) -> str:
    """Options one per line as LLaVA lists them: "A. text\\nB. text"."""
    if len(sample.choices) < 2:
        raise DataError(f"question {sample.qid} has {len(sample.choices)} option(s); multiple choice needs 2+")
    if len(sample.choices) > len(string.ascii_uppercase):
        raise DataError(f"question {sample.qid} has {len(sample.choices)} options; at most 26 can be lettered")
    return "\n".join(f"{letter}. {text}" for letter, text in zip(string.ascii_uppercase, sample.choices, strict=False))
