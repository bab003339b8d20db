"""Projector options: one dataclass per projector with the reference implementation's defaults.

Torch-free on purpose: `deco config`, `deco train` and every command taking a CONFIG validate
`projector.options` here before torch or transformers is imported, so a typo costs no model import.
The torch modules (projectors/<family>.py) take these dataclasses as their `config_class`.
"""
