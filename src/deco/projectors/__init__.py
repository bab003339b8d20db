"""The projector zoo: every module that turns vision features into LLM tokens, under one contract.

Exports are lazy: config validation imports `deco.projectors.registry` and `deco.projectors.options`,
which need no torch; the torch modules load when a projector is built (see lazy.py).
"""

from deco.lazy import lazy_exports

_EXPORTS = {
    "Grid": "options.base",
    "ProjectorConfig": "options.base",
    "parse_grid": "options.base",
    "Projector": "base",
    "build_projector": "registry",
    "get_options_class": "registry",
    "get_projector_class": "registry",
    "make_projector_config": "registry",
    "projector_names": "registry",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Grid",
    "Projector",
    "ProjectorConfig",
    "build_projector",
    "get_options_class",
    "get_projector_class",
    "make_projector_config",
    "parse_grid",
    "projector_names",
]
