"""A tiny bundled sample (images, a LLaVA-format training file, GQA and POPE question files with answers)
that `deco sample DIR` writes, so every README and docs/ example runs on a fresh clone with no downloads."""

from deco.lazy import lazy_exports

# Lazy, so that `deco --help` (which imports deco.sample.cli) does not load PIL and the scene painter.
__getattr__ = lazy_exports(__name__, {"SCENES": "scenes", "Scene": "scenes", "write_sample": "writer"})

__all__ = ["SCENES", "Scene", "write_sample"]
