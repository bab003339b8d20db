"""`deco demo`: the paper's projector comparison reproduced on a CPU with no downloads.

Flow: settings (settings.py) -> cached assets: scenes rendered to PNG + LLaVA JSON (scenes.py,
questions.py, dataset.py), a word-level tokenizer (vocab.py) and a tiny ViT pretrained in-process
(encoder.py, deco.model.tiny_vit) -> one job per projector and seed in worker processes
(schedule.py, runner.py: two-stage training through deco.train.run_training, greedy evaluation in
evaluate.py) -> results.json / results.md / plots (report.py, notes.py, plots.py). `pipeline.run_demo`
runs it all; `cli.py` adds the command.
"""
