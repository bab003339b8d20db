"""`deco demo`: the paper's projector comparison reproduced on a CPU with no downloads, on images or videos.

Layout: `core/` is shared by both scene kinds (settings, cache, runner and schedule, evaluation, report;
`core.pipeline.run_demo` runs it all); `images/` and `video/` hold what a scene kind adds (its scenes,
questions, written data, tokenizer and pretrained encoder); `cli.py` adds the command. Flow: settings ->
cached assets -> one job per projector and seed in worker processes (two-stage training through
deco.train.run_training, greedy evaluation) -> results.json / results.md / plots.
"""
