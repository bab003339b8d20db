"""deco: multimodal LLMs whose visual tokens are compressed by adaptive pooling (DeCo) and its peers."""

from deco.errors import ConfigError, DataError, DecoError, ShapeError
from deco.hf_registration import install as _install_hf_registration

# transformers' Auto classes learn model_type "deco" when transformers is (or gets) imported.
_install_hf_registration()

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "DecoError", "ShapeError", "__version__"]
