"""LLaVA-format training data: records, conversation templates, the dataset, collator and sampler.

Flow: `load_records` (JSON/JSONL, validated) -> `ConversationDataset` (template -> ids + labels,
`<image>` -> M placeholders, truncation, bad samples raised or counted) -> `ModalityLengthGroupedSampler`
-> `DataCollator` (the model's batch). `load_image` is the project's one image loader.
"""

from deco.data.collator import DataCollator
from deco.data.dataset import SKIP_REASONS, ConversationDataset
from deco.data.encoding import IGNORE_INDEX, ConversationEncoder, Encoded, TokenizationMismatch
from deco.data.images import DEFAULT_MAX_PIXELS, load_image, to_rgb
from deco.data.records import Record, find_missing_images, load_records, records_from_dicts, validate_record
from deco.data.sampler import ModalityLengthGroupedSampler
from deco.data.templates import TEMPLATES, Segment, Template, get_template, render_prompt

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IGNORE_INDEX",
    "SKIP_REASONS",
    "TEMPLATES",
    "ConversationDataset",
    "ConversationEncoder",
    "DataCollator",
    "Encoded",
    "ModalityLengthGroupedSampler",
    "Record",
    "Segment",
    "Template",
    "TokenizationMismatch",
    "find_missing_images",
    "get_template",
    "load_image",
    "load_records",
    "records_from_dicts",
    "render_prompt",
    "to_rgb",
    "validate_record",
]
