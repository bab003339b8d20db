"""Exact-name lookup for deco's registries (projectors, reducers, benchmarks): one rule, one message.

A name must match exactly (no substring or case folding, which let one entry shadow another in other
toolkits); a miss is a ConfigError that suggests the closest valid name and lists them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

from deco.errors import ConfigError

T = TypeVar("T")


def look_up(table: Mapping[str, T], name: str, what: str) -> T:
    """`table[name]`, or a ConfigError naming `what` ('projector', 'reducer', ...) with a did-you-mean."""
    if name not in table:
        close = difflib.get_close_matches(str(name), list(table), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown {what} '{name}'.{hint} Valid names: {', '.join(table)}")
    return table[name]
