"""Latency of `deco app` with a demo model: first answer and Text-to-Patch map, as the page computes them.

Runs the page's own callbacks (deco.app.handlers.Controller: the code each click runs on the server,
without the browser's few milliseconds of transport) on the bundled scenes:
  python benchmarks/app/record.py --model deco-demo/runs/seed0/deco/stage2/final --threads 2 \
      --out benchmarks/app/latency-NAME.json
Records wall seconds and process CPU seconds (all threads), the load average before and after, and the
machine, so a run on a busy machine can be told from one on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def measure(model: str, threads: int, rounds: int) -> dict[str, Any]:
    """Load once, then per scene and round: ask (first piece, full answer), explain, click a word."""
    import torch

    torch.set_num_threads(threads)
    from deco.app.handlers import Controller, new_conversations
    from deco.app.scenes import SCENES, scene_folder
    from deco.app.sources import explicit_models

    controller = Controller(explicit_models([model]), Path("deco-demo"), True)
    label = controller.labels()[0]
    conversations = new_conversations()
    _, load_s, load_cpu = _timed(controller.select_model, label, conversations, "A")
    quiet = lambda *a, **k: None  # noqa: E731  (no Gradio request to report progress to)
    rows = []
    for r in range(rounds):
        for scene in SCENES:
            image = str(scene_folder() / scene.file)
            controller.upload(image, conversations)  # a new image starts a new conversation, as on the page
            start, cpu0 = time.perf_counter(), time.process_time()
            first = None
            for out in controller.ask(image, scene.questions[0], 0.0, 1.0, 16, conversations, [], []):
                chat = out[1]
                if first is None and chat and chat[-1]["content"]:
                    first = time.perf_counter() - start
            answer_s, answer_cpu = time.perf_counter() - start, time.process_time() - cpu0
            assert not out[0], out[0]
            outputs, t2p_s, t2p_cpu = _timed(controller.analyse, image, conversations, progress=quiet)
            analysis = outputs[1]
            _, click_s, _ = _timed(controller.show_word, analysis, "0")
            rows.append({"round": r, "scene": scene.name, "question": scene.questions[0],
                         "answer": chat[-1]["content"], "first_piece_s": first, "answer_s": answer_s,
                         "answer_cpu_s": answer_cpu, "text_to_patch_s": t2p_s, "text_to_patch_cpu_s": t2p_cpu,
                         "word_click_s": click_s, "explain_timings_s": analysis.explanation.timings})
    warm = rows[len(SCENES):] or rows

    def med(key: str) -> float:
        return statistics.median(x[key] for x in warm)

    model_obj = controller.engines[label].load()
    return {
        "model": model, "projector": model_obj.projector.name, "visual_tokens": model_obj.num_image_tokens,
        "parameters": sum(p.numel() for p in model_obj.parameters()),
        "load_s": load_s, "load_cpu_s": load_cpu,
        "first_answer_cold_s": rows[0]["answer_s"], "text_to_patch_cold_s": rows[0]["text_to_patch_s"],
        "median_warm": {k: med(k) for k in ("first_piece_s", "answer_s", "answer_cpu_s", "text_to_patch_s",
                                            "text_to_patch_cpu_s", "word_click_s")},
        "max_all": {k: max(x[k] for x in rows) for k in ("answer_s", "text_to_patch_s")},
        "rows": rows,
    }


def main() -> None:
    """Measure, print a summary, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="saved model folder (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the bundled scenes (first = cold)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    load_before = os.getloadavg()
    import torch

    results = [measure(m, args.threads, args.rounds) for m in args.model]
    from deco.train.report.runinfo import cpu_model

    payload = {
        "what": "deco app latency through the page's callbacks: question -> full answer (greedy, <= 16 new "
                "tokens), answer -> Text-to-Patch maps of every word + Query-to-Patch + token metrics, word click",
        "goal_s": {"first_answer": 2.0, "text_to_patch": 3.0},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(), "nice": os.nice(0),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    for r in results:
        w = r["median_warm"]
        print(f"{r['projector']}: first answer cold {r['first_answer_cold_s']:.2f} s, warm median {w['answer_s']:.2f} s "
              f"(CPU {w['answer_cpu_s']:.2f} s); Text-to-Patch cold {r['text_to_patch_cold_s']:.2f} s, warm median "
              f"{w['text_to_patch_s']:.2f} s (CPU {w['text_to_patch_cpu_s']:.2f} s); word click {w['word_click_s'] * 1e3:.0f} ms")
    print(f"load average before {load_before}, after {payload['machine']['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
