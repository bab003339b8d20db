"""A run's state on disk: atomic checkpoints, exact resume (what may change and what is refused), the data
fingerprint, the step counters, free-space checks, disk failures and stop signals.
"""
