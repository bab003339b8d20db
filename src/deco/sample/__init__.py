"""A tiny bundled sample (images, a LLaVA-format training file, GQA and POPE question files with answers)
that `deco sample DIR` writes, so every README example runs on a fresh clone with no downloads."""

from deco.sample.scenes import SCENES, Scene
from deco.sample.writer import write_sample

__all__ = ["SCENES", "Scene", "write_sample"]
