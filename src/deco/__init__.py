"""deco: multimodal LLMs whose visual tokens are compressed by adaptive pooling (DeCo) and its peers."""

from deco.errors import ConfigError, DataError, DecoError, ShapeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "DecoError", "ShapeError", "__version__"]
