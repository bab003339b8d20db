"""A Llama-style BPE tokenizer trained on the synthetic text, so token counts are realistic without a download.

The byte tokenizer of the tiny recipe makes one token per byte (4-5x a real tokenizer's count on
English), which would overstate tokenizing time and the index size. This one learns the synthetic
vocabulary (about one token per word; Llama's tokenizer gives about 1.3 on English prose) and adds
BOS like Llama's; `deco` then adds its `<image>` and pad tokens when it loads the folder.
"""

from __future__ import annotations

import random
from pathlib import Path

from synthetic import record
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast


def train_tokenizer(out: Path, vocab_size: int = 8000, sample: int = 20000) -> Path:
    """Train on `sample` synthetic records' text; save as a Hugging Face tokenizer folder at `out`."""
    if (out / "tokenizer.json").is_file():
        return out
    rng = random.Random(0)
    texts = [turn["value"] for i in range(sample) for turn in record(i, rng)["conversations"]]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=4096)
    fast.save_pretrained(out)
    return out
