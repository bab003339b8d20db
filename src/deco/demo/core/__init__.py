"""The demo's shared core, the same for both scene kinds and importing neither: what it needs of a kind (its
defaults and checks, asset builders, projector geometry, question families) comes in a `SceneKind`
(kind.py) from the code above it (deco.demo.kinds, deco.demo.pipeline). One settings schema and loader
(settings.py), the cache helpers (cache.py; spawned.py builds an entry in a second process), one job per
projector and seed in worker processes (schedule.py, runner.py), greedy evaluation (evaluate.py), and one
report writer (report.py, notes.py, plots.py); sweep.py chooses learning rates, ladder.py and reduced.py
report `--ladder` and `--reduce`."""
