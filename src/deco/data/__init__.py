"""LLaVA-format training data: records, conversation templates, the dataset, collator and sampler.

Flow: `load_records` (JSON/JSONL, validated) -> `ConversationDataset` (template -> ids + labels,
`<image>` -> M placeholders, truncation, bad samples raised or counted) -> `ModalityLengthGroupedSampler`
-> `DataCollator` (the model's batch). `load_image` is the project's one image loader; `deco.data.check`
is the preflight behind `deco data check`.
"""

from deco.lazy import lazy_exports

_EXPORTS = {
    "DataCollator": "collator",
    "SKIP_REASONS": "dataset",
    "ConversationDataset": "dataset",
    "IGNORE_INDEX": "encoding",
    "ConversationEncoder": "encoding",
    "Encoded": "encoding",
    "TokenizationMismatch": "encoding",
    "DEFAULT_MAX_PIXELS": "images",
    "load_image": "images",
    "to_rgb": "images",
    "Record": "records",
    "find_missing_images": "records",
    "load_records": "records",
    "records_from_dicts": "records",
    "validate_record": "records",
    "ModalityLengthGroupedSampler": "sampler",
    "TEMPLATES": "templates",
    "Segment": "templates",
    "Template": "templates",
    "get_template": "templates",
    "render_prompt": "templates",
}
__all__ = sorted(_EXPORTS)
# Lazy, so that `deco --help` (which imports deco.data.cli) does not load torch.
__getattr__ = lazy_exports(__name__, _EXPORTS)
