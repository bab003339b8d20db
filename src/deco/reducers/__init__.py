"""Training-free token reducers beside the trained projectors: one contract, exact names, one setting.

`--reduce NAME:TOKENS` (e.g. `visionzip:64`) applies one to any deco model at inference
(`apply_reducer`). Exports are lazy: the registry and `parse_reduce` need no torch.
"""

from deco.lazy import lazy_exports

_EXPORTS = {
    "ReduceSpec": "registry",
    "parse_reduce": "registry",
    "reducer_names": "registry",
    "reducer_entry": "registry",
    "build_reducer": "registry",
    "Reducer": "base",
    "apply_reducer": "apply",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
