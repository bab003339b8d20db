"""`deco demo`: the paper's projector comparison reproduced on a CPU with no downloads, on images or videos.

Layout: `core/` is shared by both scene kinds (settings schema, cache, runner and schedule, evaluation,
report) and imports neither; `images/` and `video/` hold what a scene kind adds (its scenes, questions,
written data and cached assets, tokenizer, pretrained encoder, defaults and checks), each handing the core a
`SceneKind` (`core/kind.py`); `kinds.py` names the kinds and loads settings; `pipeline.py` runs it all
(`run_demo`) and `cli.py` adds the command. Flow: settings -> cached assets -> one job per projector and
seed in worker processes (two-stage training through deco.train.run_training, greedy evaluation) ->
results.json / results.md / plots.
"""
