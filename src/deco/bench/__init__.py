"""Efficiency measurements: what fewer visual tokens buy (parameters, FLOPs, time, memory, KV cache)."""

from deco.lazy import lazy_exports

__all__ = ["BenchOptions", "run_bench"]
__getattr__ = lazy_exports(__name__, {name: "runner" for name in __all__})
