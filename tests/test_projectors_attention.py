"""Attention projectors (Q-Former, Perceiver resampler, MM1 attention pooling): what is specific to them."""

from __future__ import annotations

import re

import pytest
import torch

from deco.errors import ConfigError
from deco.projectors import build_projector
from deco.projectors.attention import AttentionProbe
from deco.projectors.qformer import QFormerConfig, QFormerProjector, blip2_qformer_weights

transformers = pytest.importorskip("transformers")

DV, DL = 64, 48  # tiny widths for everything that runs
TINY = {
    "qformer": {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, "num_queries": 8},
    "resampler": {"depth": 2, "num_latents": 8, "heads": 2, "dim_head": 16},
    "attnpool": {"num_queries": 9, "heads": 4},
}
GRIDS = [(24, 24), (12, 12), (6, 8)]


def _tiny(name: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_projector(name, DV, DL, {**TINY[name], **extra})


def _scramble_(module: torch.nn.Module) -> None:
    """Large random weights, so that small formula differences (e.g. GELU variants) show in outputs."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)


def _hf_qformer_config(**overrides: object) -> transformers.Blip2QFormerConfig:
    options = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, encoder_hidden_size=DV,
                   num_hidden_layers=2, cross_attention_frequency=1)
    options.update(overrides)
    return transformers.Blip2QFormerConfig(**options)


# --- Q-Former: compatibility with HF BLIP-2 -------------------------------------------------------


@pytest.mark.parametrize("layers,freq", [(2, 1), (3, 2)])
def test_qformer_loads_hf_blip2_qformer_strictly_and_matches_its_outputs(layers: int, freq: int) -> None:
    torch.manual_seed(0)
    hf = transformers.Blip2QFormerModel(_hf_qformer_config(num_hidden_layers=layers, cross_attention_frequency=freq))
    _scramble_(hf)
    ours = QFormerProjector(QFormerConfig(**TINY["qformer"], num_hidden_layers=layers,
                                          cross_attention_frequency=freq), DV, DL)
    ours.qformer.load_state_dict(hf.state_dict(), strict=True)
    hf.eval()
    ours.eval()
    queries = torch.randn(2, 8, 32)
    feats = torch.randn(2, 36, DV)
    with torch.no_grad():
        expected = hf(query_embeds=queries, encoder_hidden_states=feats).last_hidden_state
        got = ours.qformer(queries, feats)
    assert got.shape == (2, 8, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert [hasattr(layer, "crossattention") for layer in ours.qformer.encoder.layer] == [
        i % freq == 0 for i in range(layers)
    ]


def test_qformer_loads_a_blip2_model_checkpoint_and_reproduces_its_query_tokens() -> None:
    torch.manual_seed(0)
    config = transformers.Blip2Config(
        vision_config=dict(hidden_size=DV, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=28, patch_size=14),
        qformer_config=dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
                            cross_attention_frequency=1, encoder_hidden_size=DV),
        text_config=dict(model_type="opt", hidden_size=DL, num_hidden_layers=1, ffn_dim=64, num_attention_heads=4,
                         vocab_size=100, word_embed_proj_dim=DL, max_position_embeddings=64),
        num_query_tokens=8,
    )
    blip2 = transformers.Blip2Model(config).eval()
    _scramble_(blip2.qformer)
    _scramble_(blip2.language_projection)
    with torch.no_grad():
        blip2.query_tokens.normal_()  # HF starts them at zero, which would hide a mix-up
    ours = QFormerProjector(QFormerConfig(**TINY["qformer"]), DV, DL).eval()
    weights = blip2_qformer_weights(blip2.state_dict())
    assert not any(k.startswith(("vision_model.", "language_model.")) for k in weights)
    ours.load_state_dict(weights, strict=True)

    feats = torch.randn(2, 20, DV)
    with torch.no_grad():
        hidden = blip2.qformer(query_embeds=blip2.query_tokens.expand(2, -1, -1),
                               encoder_hidden_states=feats).last_hidden_state
        expected = blip2.language_projection(hidden)
        got = ours(feats, (4, 5))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_blip2_qformer_weights_drops_the_text_branch_of_text_input_checkpoints() -> None:
    torch.manual_seed(0)
    hf = transformers.Blip2QFormerModel(_hf_qformer_config(use_qformer_text_input=True))
    state = {"qformer." + k: v for k, v in hf.state_dict().items()}
    state["query_tokens"] = torch.randn(1, 8, 32)
    text_keys = [k for k in state if re.search(r"\.layer\.\d+\.(intermediate|output)\.", k)]
    assert text_keys, "the HF text-input Q-Former should carry text-branch weights"
    ours = QFormerProjector(QFormerConfig(**TINY["qformer"]), DV, DL)
    result = ours.load_state_dict(blip2_qformer_weights(state), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == ["language_projection.bias", "language_projection.weight"]
    torch.testing.assert_close(ours.query_tokens, state["query_tokens"])


def test_qformer_defaults_follow_the_deco_comparison() -> None:
    cfg = QFormerConfig()
    assert (cfg.num_hidden_layers, cfg.cross_attention_frequency, cfg.hidden_size, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.num_queries, cfg.layer_norm_eps) == (2, 1, 768, 12, 3072, 32, 1e-12)
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.1


def test_qformer_query_init_is_lavis_normal_or_hf_zeros() -> None:
    torch.manual_seed(0)
    lavis = build_projector("qformer", DV, DL, {**TINY["qformer"], "num_queries": 256})
    assert abs(lavis.query_tokens.std().item() - 0.02) < 0.002
    zeros = build_projector("qformer", DV, DL, {**TINY["qformer"], "query_init_std": 0.0})
    assert torch.count_nonzero(zeros.query_tokens) == 0


# --- exact parameter counts (construction only, on the meta device) --------------------------------


@pytest.mark.parametrize(
    "name,options,expected",
    [
        ("qformer", {}, 22_865_920),
        ("qformer", {"num_queries": 144}, 22_951_936),
        ("qformer", {"num_hidden_layers": 12, "cross_attention_frequency": 2}, 104_773_120),
        ("attnpool", {}, 25_327_616),  # regression value of this implementation (MM1 gives none)
        ("resampler", {}, 67_217_408),  # regression value of this implementation (Flamingo gives none)
    ],
)
def test_parameter_counts_at_llava_widths(name: str, options: dict, expected: int) -> None:
    with torch.device("meta"):
        projector = build_projector(name, 1024, 4096, options)
    assert projector.num_parameters() == expected


def test_qformer_count_equals_hf_qformer_plus_queries_and_projection() -> None:
    with torch.device("meta"):
        hf = transformers.Blip2QFormerModel(transformers.Blip2QFormerConfig(
            num_hidden_layers=2, cross_attention_frequency=1, encoder_hidden_size=1024))
        ours = build_projector("qformer", 1024, 4096)
    hf_count = sum(p.numel() for p in hf.parameters())
    assert ours.qformer.state_dict().keys() == hf.state_dict().keys()
    assert ours.num_parameters() == hf_count + 32 * 768 + 768 * 4096 + 4096


# --- attention probes -----------------------------------------------------------------------------


def _probes(module: torch.nn.Module) -> list[AttentionProbe]:
    return [m for m in module.modules() if isinstance(m, AttentionProbe)]


@pytest.mark.parametrize(
    "name,options,kinds",
    [
        ("qformer", {}, ["self", "cross", "self", "cross"]),
        ("qformer", {"num_hidden_layers": 4, "cross_attention_frequency": 2},
         ["self", "cross", "self", "self", "cross", "self"]),
        ("resampler", {}, ["cross", "cross"]),
        ("attnpool", {}, ["cross"]),
    ],
)
def test_probe_count_and_kinds(name: str, options: dict, kinds: list[str]) -> None:
    assert [p.kind for p in _probes(_tiny(name, **options))] == kinds


def _capture(projector: torch.nn.Module, feats: torch.Tensor, grid: tuple[int, int]):
    maps: list[tuple[str, torch.Tensor]] = []
    grads: dict[int, torch.Tensor] = {}

    def hook(module: AttentionProbe, _inputs: tuple, output: torch.Tensor) -> None:
        index = len(maps)
        maps.append((module.kind, output))
        output.register_hook(lambda g: grads.__setitem__(index, g))

    handles = [p.register_forward_hook(hook) for p in _probes(projector)]
    out = projector(feats, grid)
    out.pow(2).sum().backward()
    for handle in handles:
        handle.remove()
    return out, maps, grads


@pytest.mark.parametrize("name", ["qformer", "resampler", "attnpool"])
def test_probes_capture_maps_of_the_expected_shape_with_gradients(name: str) -> None:
    projector = _tiny(name).eval()
    grid = (6, 8)
    n = grid[0] * grid[1]
    _, maps, grads = _capture(projector, torch.randn(2, n, DV), grid)
    m = projector.num_tokens(grid)
    heads = {"qformer": 4, "resampler": 2, "attnpool": 4}[name]
    expected_keys = {"self": m, "cross": n + m if name == "resampler" else n}
    assert maps
    for i, (kind, probs) in enumerate(maps):
        assert probs.shape == (2, heads, m, expected_keys[kind])
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, heads, m))
        assert grads[i].shape == probs.shape and grads[i].abs().sum() > 0


def test_resampler_keys_are_patches_first_then_latents() -> None:
    projector = _tiny("resampler").eval()
    feats = torch.randn(1, 48, DV)
    perm = torch.randperm(48)
    with torch.no_grad():
        _, maps, _ = _capture_no_grad(projector, feats)
        _, maps_perm, _ = _capture_no_grad(projector, feats[:, perm])
    for (_, a), (_, b) in zip(maps, maps_perm, strict=True):
        # Without position embeddings the resampler ignores patch order: permuting the patches
        # permutes the first N key columns and leaves the last num_latents (latent) columns alone.
        torch.testing.assert_close(b[..., :48], a[..., :48][..., perm])
        torch.testing.assert_close(b[..., 48:], a[..., 48:])


def _capture_no_grad(projector: torch.nn.Module, feats: torch.Tensor):
    maps: list[tuple[str, torch.Tensor]] = []
    handles = [p.register_forward_hook(lambda mod, _i, out: maps.append((mod.kind, out)))
               for p in _probes(projector)]
    out = projector(feats, (6, 8))
    for handle in handles:
        handle.remove()
    return out, maps, None


# --- shapes, determinism, options -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["qformer", "resampler", "attnpool"])
@pytest.mark.parametrize("grid", GRIDS)
def test_output_shape_is_independent_of_the_grid(name: str, grid: tuple[int, int]) -> None:
    projector = _tiny(name)
    out = projector(torch.randn(3, grid[0] * grid[1], DV), grid)
    assert out.shape == (3, projector.num_tokens(grid), DL)
    assert projector.num_tokens(grid) == {"qformer": 8, "resampler": 8, "attnpool": 9}[name]


@pytest.mark.parametrize("name", ["qformer", "resampler", "attnpool"])
def test_eval_mode_is_deterministic(name: str) -> None:
    projector = _tiny(name).eval()
    feats = torch.randn(2, 36, DV)
    with torch.no_grad():
        torch.testing.assert_close(projector(feats, (6, 6)), projector(feats, (6, 6)), rtol=0, atol=0)


def test_qformer_dropout_acts_in_training_only() -> None:
    projector = _tiny("qformer").train()
    feats = torch.randn(2, 36, DV)
    with torch.no_grad():
        assert not torch.equal(projector(feats, (6, 6)), projector(feats, (6, 6)))


def test_resampler_dim_option_adds_an_input_projection() -> None:
    projector = _tiny("resampler", dim=40)
    assert isinstance(projector.input_proj, torch.nn.Linear) and projector.latents.shape == (8, 40)
    assert projector(torch.randn(2, 36, DV), (6, 6)).shape == (2, 8, DL)
    assert isinstance(_tiny("resampler").input_proj, torch.nn.Identity)


def test_resampler_position_embedding_is_off_by_default_and_resized_to_the_grid() -> None:
    assert _tiny("resampler").pos_emb is None
    projector = _tiny("resampler", pos_emb_grid="12x12")
    assert projector.pos_emb.shape == (1, DV, 12, 12)
    for grid in GRIDS:
        assert projector(torch.randn(1, grid[0] * grid[1], DV), grid).shape == (1, 8, DL)
    # With positions, patch order now matters.
    feats = torch.randn(1, 144, DV)
    projector.eval()
    with torch.no_grad():
        assert not torch.allclose(projector(feats, (12, 12)), projector(feats.flip(1), (12, 12)))


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("qformer", {"hidden_size": 30, "num_attention_heads": 4}, "hidden_size"),
        ("qformer", {"num_queries": 0}, "num_queries"),
        ("qformer", {"num_hidden_layers": -1}, "num_hidden_layers"),
        ("qformer", {"cross_attention_frequency": 0}, "cross_attention_frequency"),
        ("qformer", {"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
        ("qformer", {"query_init_std": -0.1}, "query_init_std"),
        ("qformer", {"num_queries": 2.5}, "num_queries"),
        ("resampler", {"depth": 0}, "depth"),
        ("resampler", {"num_latents": -4}, "num_latents"),
        ("resampler", {"dim": 0}, "dim"),
        ("resampler", {"pos_emb_grid": "0x3"}, "pos_emb_grid"),
        ("attnpool", {"num_queries": 0}, "num_queries"),
        ("attnpool", {"heads": 5}, "heads"),
        ("attnpool", {"activation": "tanh"}, "activation"),
    ],
)
def test_bad_options_raise_config_error_naming_the_field(name: str, options: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_projector(name, DV, DL, {**TINY[name], **options})
