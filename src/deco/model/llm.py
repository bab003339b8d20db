"""Causal LMs: any HF decoder by id/path, or Llama/Qwen2 built from a config; their tokenizers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from deco.errors import ConfigError
from deco.hub import hub_kwargs, load_failure
from deco.model.tokenizer import build_byte_tokenizer, ensure_image_token, ensure_pad_token, load_tokenizer
from deco.pickles import pickle_policy

_ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
_BUILTIN_TOKENIZERS = {"byte-llama": "llama", "byte-qwen": "qwen"}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make new floating tensors `dtype` while building a model from a config.

    Building a 7B model in fp32 and casting it afterwards takes twice the memory and time; built in
    bf16 directly, HF still keeps the rotary inverse frequencies in fp32 (as from_pretrained does),
    where a cast after the fact would round them to bf16.
    """
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def load_llm(
    pretrained: str | None,
    arch: str = "llama",
    hf_config: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    allow_pickle: bool = False,
    quantization_config: Any = None,
) -> PreTrainedModel:
    """Load an HF causal LM by id/path, or build `arch` from `hf_config` with random weights.

    `quantization_config` (e.g. QLoRA's 4-bit BitsAndBytesConfig) applies to pretrained weights only.
    """
    if pretrained is None:
        if quantization_config is not None:
            raise ConfigError("4-bit loading (QLoRA) needs pretrained LLM weights: set llm.pretrained")
        if arch not in _ARCHS:
            raise ConfigError(f"llm.arch '{arch}' is not supported; valid: {', '.join(_ARCHS)}")
        config_cls, model_cls = _ARCHS[arch]
        try:
            config = config_cls(**(hf_config or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"llm.hf_config is invalid for {arch}: {exc}") from None
        config._attn_implementation = attn_implementation
        with default_dtype(dtype):
            return model_cls(config)
    try:
        config = AutoConfig.from_pretrained(pretrained, **hub_kwargs(pretrained))
    except (OSError, ValueError) as exc:
        raise ConfigError(load_failure("an LLM config", pretrained, exc)) from None
    try:
        # pickle_policy: whatever the folder says, only the caller's decision unpickles. config= passed
        # explicitly: otherwise a `use_safetensors` key in the folder's own config.json takes the keyword
        # below for itself and HF falls back to pickle files (deco.pickles).
        with pickle_policy(allow_pickle):
            return AutoModelForCausalLM.from_pretrained(
                pretrained,
                config=config,
                dtype=dtype,
                attn_implementation=attn_implementation,
                use_safetensors=None if allow_pickle else True,
                quantization_config=quantization_config,
                **hub_kwargs(pretrained),
            )
    except ConfigError:  # the pickle policy's own line
        raise
    except ValueError as exc:
        raise ConfigError(f"'{pretrained}' ({config.model_type}) is not a causal LM deco can load: {exc}") from None
    except OSError as exc:
        hint = "" if allow_pickle else " (pickle-only weights are refused; for trusted files pass --allow-pickle, or set model.allow_pickle=true in a training config)"
        raise ConfigError(load_failure("LLM weights", pretrained, exc) + hint) from None


def resolve_tokenizer(spec: str | None, pretrained: str | None) -> PreTrainedTokenizerBase:
    """Tokenizer from `spec` (HF id/path or a built-in byte tokenizer name), else the LLM's own."""
    name = spec or pretrained
    if name is None:
        raise ConfigError(
            "llm.tokenizer is not set and the LLM is built from a config: name a tokenizer path "
            f"or one of the built-in tokenizers {', '.join(_BUILTIN_TOKENIZERS)}"
        )
    if name in _BUILTIN_TOKENIZERS:
        tokenizer = build_byte_tokenizer(_BUILTIN_TOKENIZERS[name])
        ensure_pad_token(tokenizer)
        ensure_image_token(tokenizer)
        return tokenizer
    return load_tokenizer(name)


def fit_embeddings(llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the LM's vocabulary when the tokenizer gained tokens (e.g. `<image>`)."""
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer))
