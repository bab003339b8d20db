"""Efficiency measurements: what fewer visual tokens buy (parameters, FLOPs, time, memory, KV cache)."""

from deco.bench.runner import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
