"""Exception types that the CLI turns into one-line messages instead of tracebacks."""


class DecoError(Exception):
    """Base class for every error caused by bad input to deco (config, data, shapes, files)."""


class ConfigError(DecoError, ValueError):
    """A config file, override or config value is invalid; the message names the key and source."""


class ShapeError(DecoError, ValueError):
    """A tensor or grid does not have the shape a component declared."""


class DataError(DecoError, ValueError):
    """A data file or sample is malformed; the message names the file, line or sample id."""


class NonFiniteError(DecoError):
    """Training met a non-finite loss or gradient norm (train.on_nonfinite=error); names the step and samples."""


class StoppedBySignal(Exception):
    """Work stopped cleanly on SIGTERM / SIGINT (state saved); the CLI prints the message and exits `status`."""

    status: int = 143
