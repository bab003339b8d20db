"""How long `deco analyze` takes for models of the demo's size, on this machine.

Builds (untrained, random-weight) models with the demo's geometry: the demo's tiny ViT (48 px, patch 4,
12x12 patches), its 2-layer Llama of width 128 with the demo's word tokenizer, and each demo
projector at the demo's sizes and 6x6 = 36 tokens for the compressors. Weights do not change the cost,
so random ones time the same as trained ones. Then times, per projector (median of --repeats):
- explaining one answer (`deco.analysis.explain`, vicuna_v1 prompt as in stage 2, a given one-word
  answer and a generated one of up to 4 tokens): Query-to-Patch, Text-to-Query and total;
- the metrics over --images demo scenes (`projector_metrics`).
Writes benchmarks/results/analysis_timing.json with the machine it ran on.

    python benchmarks/analysis_timing.py [--repeats 3] [--images 16] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deco.analysis.compare import projector_metrics
from deco.analysis.explanation import explain
from deco.config import load_config
from deco.demo.images.questions import conversation_questions
from deco.demo.images.scenes import render, sample_scene
from deco.demo.images.vocab import build_demo_tokenizer
from deco.demo.kinds import default_settings
from deco.model import build_model
from deco.model.tiny_vit import TinyViTConfig, TinyViTTower
from deco.train.report.runinfo import machine, versions


def demo_model(name: str, tokenizer_dir: Path):
    """A random-weight model with the demo's encoder, LM, tokenizer and projector sizes."""
    s = default_settings()
    h, w = s.token_grid
    options = dict(s.projector_options.get(name, {}))
    if name in ("deco", "cabstractor", "dabstractor"):
        options["grid"] = f"{h}x{w}"
    if name == "dabstractor":
        options["num_input_tokens"] = s.grid * s.grid
    if name == "cabstractor":
        options["num_input_tokens"] = s.grid * s.grid
    if name == "qformer":
        options["num_queries"] = h * w
    e, lm = s.encoder, s.lm
    tower = TinyViTTower(TinyViTConfig(image_size=s.scenes.image_size, patch_size=e.patch_size,
                                       hidden_size=e.hidden_size, num_layers=e.num_layers, num_heads=e.num_heads),
                         feature_layer=e.feature_layer)
    overrides = [
        f"projector.name={name}", f"projector.options={json.dumps(options)}", f"llm.tokenizer={tokenizer_dir}",
        f"llm.hf_config={json.dumps({'hidden_size': lm.hidden_size, 'intermediate_size': lm.intermediate_size, 'num_hidden_layers': lm.num_layers, 'num_attention_heads': lm.num_heads, 'num_key_value_heads': lm.num_heads, 'vocab_size': 64, 'max_position_embeddings': 1024})}",
    ]
    torch.manual_seed(0)
    return build_model(load_config("configs/tiny.yaml", overrides), vision_tower=tower).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); 1 avoids OpenMP slowdowns on a busy machine")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "analysis_timing.json")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()  # other work on the machine slows every number below
    settings = default_settings()
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, settings.scenes.image_size, 1, 4) for _ in range(args.images)]
    images = [render(s) for s in scenes]
    (_, (question, answer)), = conversation_questions(scenes[0], rng, 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_demo_tokenizer(tmp)
        for name in settings.projectors:
            model = demo_model(name, Path(tmp))
            explain(model, images[0], question, answer=answer)  # warm-up (first-call allocations)
            given, generated, metric = [], [], []
            for _ in range(args.repeats):
                given.append(explain(model, images[0], question, answer=answer).timings)
                generated.append(explain(model, images[0], question, max_new_tokens=4).timings)
                start = time.perf_counter()
                projector_metrics(model, images)
                metric.append(time.perf_counter() - start)
            med = {k: statistics.median(t[k] for t in given) for k in given[0]}
            rows.append({
                "projector": name,
                "tokens": model.num_image_tokens,
                "route": explain(model, images[0], question, answer=answer).q2p.route,
                "explain_given_answer_s": med,
                "explain_generated_answer_total_s": statistics.median(t["total_s"] for t in generated),
                f"metrics_{args.images}_images_s": statistics.median(metric),
            })
            print(json.dumps(rows[-1]))
    result = {
        "what": "deco analyze timings for demo-sized models (random weights; weights do not change the cost)",
        "question": question, "answer": answer, "repeats": args.repeats, "images": args.images,
        "machine": machine(), "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
        "versions": versions(), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
