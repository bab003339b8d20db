"""What a run tells: the progress bar or lines, metrics.jsonl, experiment trackers, the collapse probe,
per-block gradient diagnostics and the run's machine/version record.
"""
