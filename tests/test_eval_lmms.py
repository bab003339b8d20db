"""The lmms-eval adapter: registration, generate_until, loglikelihood, and a full offline lmms-eval run.

Skipped when lmms-eval is not installed; .ci/run installs `.[eval]` in an environment of its own and runs
this file there, the slow end-to-end test included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("lmms_eval")

from lmms_eval.api.instance import GenerationResult, Instance  # noqa: E402

from deco.eval.generation import Generator  # noqa: E402
from deco.eval.lmms import DecoLMM  # noqa: E402

QUESTION = "Is the square red?\nAnswer the question using a single word or phrase."

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def adapter(saved_tiny_model: Path) -> DecoLMM:
    lm = DecoLMM(pretrained=str(saved_tiny_model), template="vicuna_v1", batch_size=2, device="cpu")
    docs = [{"image": Image.new("RGB", (20 + i, 24), (80 * i, 40, 200)), "q": f"Question {i}?" + " More." * i}
            for i in range(3)]
    lm.task_dict = {"local": {"test": docs}}
    return lm


def _visual(doc: dict) -> list[Image.Image]:
    return [doc["image"]]


def _request(kind: str, args: tuple, doc_id: int) -> Instance:
    return Instance(request_type=kind, arguments=args, idx=0,  # type: ignore[arg-type]
                    metadata={"task": "local", "doc_id": doc_id, "repeats": 1})


def test_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    assert get_model("deco") is DecoLMM


def test_unknown_model_args_are_refused(saved_tiny_model):
    from deco.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown deco model_args \\['temprature'\\]"):
        DecoLMM(pretrained=str(saved_tiny_model), temprature=0)
    with pytest.raises(ConfigError, match="loglikelihood must be 'loss' or 'logprob'"):
        DecoLMM(pretrained=str(saved_tiny_model), loglikelihood="nll")


def test_generate_until_matches_single_generation_and_passes_stops(adapter, monkeypatch):
    docs = adapter.task_dict["local"]["test"]
    greedy = {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    requests = [_request("generate_until", (d["q"], dict(greedy), _visual, i, "local", "test"), i)
                for i, d in enumerate(docs)]
    requests.insert(1, _request("generate_until", (docs[0]["q"], {"max_new_tokens": 2}, _visual, 0, "local", "test"), 0))
    calls: list[tuple[int, dict]] = []
    original = Generator.generate

    def spy(self, prompts, images, max_new_tokens, **kw):
        calls.append((len(prompts), {"max_new_tokens": max_new_tokens, **kw}))
        return original(self, prompts, images, max_new_tokens, **kw)

    monkeypatch.setattr(Generator, "generate", spy)
    out = adapter.generate_until(requests)
    assert all(isinstance(r, GenerationResult) for r in out) and len(out) == 4
    # Three requests share settings (batches of 2 + 1), the odd one runs alone; order is kept.
    assert sorted(n for n, _ in calls) == [1, 1, 2]
    assert all(kw["stop"] == ["\n\n"] and kw["max_new_tokens"] == 4 for n, kw in calls if n == 2)
    assert not any("temperature" in kw for _, kw in calls)  # greedy: sampling knobs are dropped
    gen = adapter.generator
    for r, (doc, n) in zip(out, [(docs[0], 4), (docs[0], 2), (docs[1], 4), (docs[2], 4)], strict=True):
        alone = original(gen, [gen.prompt(doc["q"], 1)], [[doc["image"]]], n, stop=["\n\n"])[0]
        assert r.text == alone.text and r.token_counts.output_tokens == alone.tokens


def test_loglikelihood_is_the_teacher_forced_continuation_score(adapter, saved_tiny_model):
    doc = adapter.task_dict["local"]["test"][1]
    reqs = [_request("loglikelihood", (QUESTION, cont, _visual, 1, "local", "test"), 1) for cont in (" yes", " no")]
    losses = [r.text for r in adapter.loglikelihood(reqs)]
    logprob = DecoLMM(pretrained=str(saved_tiny_model), template="vicuna_v1", device="cpu", loglikelihood="logprob")
    logprob.task_dict = adapter.task_dict
    logprobs = [r.text for r in logprob.loglikelihood(reqs)]
    for (loss, g1), (lp, g2) in zip(losses, logprobs, strict=True):
        assert lp < 0 and loss == pytest.approx(-lp) and g1 == g2
    # Independent check through the HF loss: mean NLL over the continuation's labels.
    gen = adapter.generator
    prompt = gen.prompt(QUESTION, 1)
    for (loss, greedy), cont in zip(losses, (" yes", " no"), strict=True):
        batch = gen.processor([prompt + cont], [doc["image"]])
        n_cont = len(gen.tokenizer(cont, add_special_tokens=False).input_ids)
        labels = batch["input_ids"].clone()
        labels[:, :-n_cont] = -100
        with torch.no_grad():
            out = gen.model(**batch, labels=labels)
        assert loss == pytest.approx(out.loss.item() * n_cont, rel=1e-4)
        predicted = out.logits[0, -n_cont - 1 : -1].argmax(-1)
        assert greedy == bool((predicted == batch["input_ids"][0, -n_cont:]).all())


TASK_QA = """\
task: deco_local_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: local.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function local_utils.doc_to_visual
doc_to_text: !function local_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function local_utils.process_results
metric_list:
  - metric: exact
    aggregation: mean
    higher_is_better: true
"""

TASK_MC = """\
task: deco_local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: local.jsonl
test_split: test
output_type: multiple_choice
doc_to_visual: !function local_utils.doc_to_visual
doc_to_text: !function local_utils.doc_to_text
doc_to_choice: ["no", "yes"]
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

UTILS = """\
from pathlib import Path

from deco.data.images import load_image

HERE = Path(__file__).parent


def doc_to_visual(doc):
    return [load_image(HERE / doc["image"])]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"] + "\\nAnswer the question using a single word or phrase."


def process_results(doc, results):
    return {"exact": float(results[0].strip().lower() == doc["answer"])}
"""


def write_task_folder(root: Path, n: int = 4) -> Path:
    """A local lmms-eval task folder: two task YAMLs over one JSONL file with PNG images, no Hub access."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (30, 30), (200 * (i % 2), 30, 30)).save(root / f"im{i}.png")
        rows.append({"question_id": i, "question": f"Is square {i} red?", "image": f"im{i}.png",
                     "answer": "yes" if i % 2 else "no", "label": i % 2})
    (root / "local.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "deco_local_qa.yaml").write_text(TASK_QA, encoding="utf-8")
    (root / "deco_local_mc.yaml").write_text(TASK_MC, encoding="utf-8")
    (root / "local_utils.py").write_text(textwrap.dedent(UTILS), encoding="utf-8")
    return root


@pytest.mark.slow
def test_lmms_eval_cli_runs_a_local_task_end_to_end(tmp_path, saved_tiny_model):
    """`python -m lmms_eval --model deco ...` offline on a local task folder writes scores (about 30 s)."""
    tasks = write_task_folder(tmp_path / "tasks")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "deco", "--model_args", f"pretrained={saved_tiny_model}",
           "--batch_size", "2", "--tasks", "deco_local_qa,deco_local_mc", "--include_path", str(tasks),
           "--output_path", str(tmp_path / "out"), "--limit", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list((tmp_path / "out").rglob("*_results.json"))
    assert len(files) == 1, proc.stdout[-2000:]
    written = json.loads(files[0].read_text(encoding="utf-8"))
    results = written["results"]
    assert 0.0 <= results["deco_local_qa"]["exact,none"] <= 1.0
    assert results["deco_local_mc"]["acc,none"] in (0.0, 0.5, 1.0)  # --limit 2: two of the four questions
    assert {k: v["effective"] for k, v in written["n-samples"].items()} == {"deco_local_qa": 2, "deco_local_mc": 2}
