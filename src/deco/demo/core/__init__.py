"""The demo's shared core, the same for both scene kinds: one settings schema and loader (settings.py; a
kind's defaults come from its package), the cached assets (cache.py dispatches to the kind's builders), one
job per projector and seed in worker processes (schedule.py, runner.py), greedy evaluation (evaluate.py),
and one report writer (report.py, notes.py, plots.py); pipeline.py runs it all, sweep.py chooses learning
rates."""
