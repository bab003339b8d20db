"""The projector zoo: every module that turns vision features into LLM tokens, under one contract."""

from deco.projectors.base import Grid, Projector, ProjectorConfig, parse_grid
from deco.projectors.registry import (
    build_projector,
    get_projector_class,
    make_projector_config,
    projector_names,
)

__all__ = [
    "Grid",
    "Projector",
    "ProjectorConfig",
    "build_projector",
    "get_projector_class",
    "make_projector_config",
    "parse_grid",
    "projector_names",
]
