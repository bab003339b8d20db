"""The `<image>` placeholder as records and templates write it: a constant, so reading data needs no
tokenizer library (`deco data check` validates 10,000 records without importing transformers)."""

IMAGE_TOKEN = "<image>"
