"""The rich console commands print tables on: wide when the output is a file or a CI log.

Rich lays tables out for 80 columns when stdout is not a terminal, which splits headers and names mid-word
in a log (`deco bench`'s cost tables, `deco projectors`). A log has no width, so when the output is not a
terminal the console is made as wide as `COLUMNS` says, or 200 columns.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

LOG_WIDTH = 200


def output_console(stderr: bool = False) -> Console:
    """A Console for a command's output: the terminal's width on a terminal, else COLUMNS or LOG_WIDTH."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=int(columns) if columns.isdigit() else LOG_WIDTH)
