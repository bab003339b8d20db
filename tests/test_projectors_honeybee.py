"""Honeybee's C-Abstractor and D-Abstractor, and the pure-torch deformable attention under them."""

from __future__ import annotations

import pytest
import torch

from deco.errors import ConfigError, ShapeError
from deco.projectors import build_projector, make_projector_config
from deco.projectors.attention import AttentionProbe
from deco.projectors.cabstractor import RegBlock, resize_pos_emb
from deco.projectors.dabstractor import DeformableDecoderLayer, grid_reference_points
from deco.projectors.deformable import (
    MultiScaleDeformableAttention,
    SamplingLocations,
    deformable_sample,
    patch_attention,
)

DV, DL = 32, 48  # tiny widths for behaviour tests
TINY = {
    "cabstractor": {"depth": 1, "hidden_size": 24},
    "dabstractor": {"num_layers": 2, "num_heads": 4, "ffn_width": 40, "dropout": 0.0, "hidden_size": 16},
}


def tiny(name: str, **options: object):
    return build_projector(name, DV, DL, {**TINY[name], **options})


# ---- exact sizes (kakaobrain/honeybee's defaults) ----


@pytest.mark.parametrize("m", [144, 64])
def test_cabstractor_parameter_count_is_exact_for_any_m(m: int) -> None:
    assert build_projector("cabstractor", 1024, 4096, {"num_queries": m}).num_parameters() == 37_398_016


def test_dabstractor_parameter_count_is_exact_at_144_queries() -> None:
    proj = build_projector("dabstractor", 1024, 4096)
    assert proj.num_parameters() == 55_944_032
    # the pieces Honeybee has: no input projection (d = Dv), query content, points, pos-emb, output Linear
    assert isinstance(proj.input_proj, torch.nn.Identity)
    assert proj.query_embed.shape == (144, 1024)
    assert proj.reference_points.shape == (1, 144, 2)
    assert proj.pos_emb is not None and proj.pos_emb.shape == (1, 576, 1024)


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
def test_full_size_forward_gives_144_llm_tokens(name: str) -> None:
    torch.manual_seed(0)
    proj = build_projector(name, 1024, 4096).eval()
    with torch.no_grad():
        out = proj(torch.randn(1, 576, 1024), (24, 24))
    assert out.shape == (1, 144, 4096)
    assert torch.isfinite(out).all()


# ---- shapes, options, errors ----


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
@pytest.mark.parametrize("grid", [(24, 24), (12, 12), (12, 16)])
@pytest.mark.parametrize("m", [144, 64])
def test_output_shape_matches_num_tokens(name: str, grid: tuple[int, int], m: int) -> None:
    proj = tiny(name, num_queries=m).eval()
    x = torch.randn(2, grid[0] * grid[1], DV)
    out = proj(x, grid)
    assert out.shape == (2, m, DL) == (2, proj.num_tokens(grid), DL)


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
def test_non_square_target_grid_option(name: str) -> None:
    proj = tiny(name, grid="6x8").eval()
    assert proj.config.num_queries == 48
    assert proj(torch.randn(1, 144, DV), (12, 12)).shape == (1, 48, DL)


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
def test_bad_options_raise_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="num_queries"):
        make_projector_config(name, {"num_queries": 140})
    with pytest.raises(ConfigError, match="disagrees"):
        make_projector_config(name, {"num_queries": 64, "grid": 12})
    with pytest.raises(ConfigError, match="num_input_tokens"):
        make_projector_config(name, {"num_input_tokens": 577})
    with pytest.raises(ConfigError, match="depth|num_layers"):
        make_projector_config(name, {"depth": -1} if name == "cabstractor" else {"num_layers": 0})


def test_dabstractor_rejects_bad_dropout_and_head_split() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        make_projector_config("dabstractor", {"dropout": 1.5})
    with pytest.raises(ConfigError, match="divisible"):
        build_projector("dabstractor", 30, DL, {"num_heads": 4})


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
def test_grid_smaller_than_target_raises_shape_error(name: str) -> None:
    proj = tiny(name)  # 12x12 target
    with pytest.raises(ShapeError, match="larger than the input"):
        proj.num_tokens((8, 8))
    with pytest.raises(ShapeError, match="larger than the input"):
        proj(torch.randn(1, 11 * 16, DV), (11, 16))


# ---- training ----


@pytest.mark.parametrize("name", ["cabstractor", "dabstractor"])
def test_gradient_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    proj = tiny(name, num_queries=16)
    out = proj(torch.randn(2, 64, DV), (8, 8))
    (out**2).mean().backward()
    missing = [n for n, p in proj.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cabstractor_block_structure_follows_timm_bottleneck() -> None:
    block = RegBlock(40, 24)
    assert block.conv2[0].groups == 24  # group width 1: depthwise
    assert block.se.fc1.out_channels == 10  # round(0.25 * input width), not output width
    assert isinstance(block.shortcut, torch.nn.Sequential)  # projection when widths differ
    se_convs = {block.se.fc1, block.se.fc2}
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all((m.bias is not None) == (m in se_convs) for m in convs)  # only SE convs have a bias
    assert isinstance(RegBlock(24, 24).shortcut, torch.nn.Identity)


def test_pos_emb_is_used_as_is_on_native_grid_and_resized_otherwise() -> None:
    pe = torch.randn(1, 36, 8)
    assert resize_pos_emb(pe, (6, 6), (6, 6)) is pe
    const = torch.full((1, 36, 8), 0.25)
    assert torch.allclose(resize_pos_emb(const, (6, 6), (4, 9)), torch.full((1, 36, 8), 0.25), atol=1e-6)


# ---- D-Abstractor specifics ----


def test_reference_points_start_on_honeybee_grid() -> None:
    ref = grid_reference_points((12, 12), (24, 24))[0]  # [144, 2] as (x, y)
    assert torch.allclose(ref[0], torch.tensor([0.5 / 24, 0.5 / 24]))
    assert torch.allclose(ref[-1], torch.tensor([23.5 / 24, 23.5 / 24]))
    assert torch.allclose(ref[1], torch.tensor([(0.5 + 23 / 11) / 24, 0.5 / 24]))  # x varies fastest


def test_dabstractor_stays_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    proj = tiny("dabstractor").eval()
    x = torch.randn(1, 144, DV)
    seen: list[torch.dtype] = []
    proj.layers[0].ffn.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        ref = proj(x, (12, 12))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = proj(x, (12, 12))
            out_bf16_in = proj(x.bfloat16(), (12, 12))
    assert seen == [torch.float32] * 3
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert out_bf16_in.dtype == torch.bfloat16  # cast back to the caller's dtype, as Honeybee does


def test_dabstractor_probes_show_self_and_deformable_maps() -> None:
    proj = tiny("dabstractor", num_queries=16).eval()
    maps: dict[str, list[tuple[int, ...]]] = {"self": [], "cross": [], "loc": []}
    for mod in proj.modules():
        if isinstance(mod, AttentionProbe):
            mod.register_forward_hook(lambda m, i, o: maps[m.kind].append(tuple(o.shape)))
        if isinstance(mod, SamplingLocations):
            mod.register_forward_hook(lambda m, i, o: maps["loc"].append(tuple(o.shape)))
    proj(torch.randn(2, 64, DV), (8, 8))
    assert maps["self"] == [(2, 4, 16, 16)] * 2
    assert maps["cross"] == [(2, 4, 16, 4)] * 2  # [B, heads, Q, levels*points]
    assert maps["loc"] == [(2, 4, 16, 4, 2)] * 2
    assert proj.layers[1].cross_attn.last_sampling_locations.shape == (2, 4, 16, 4, 2)


def test_decoder_layer_matches_hf_deformable_detr_layer() -> None:
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrDecoderLayer

    torch.manual_seed(0)
    d, heads, points, ffn, shape = 32, 4, 4, 48, (5, 7)
    cfg = DeformableDetrConfig(
        d_model=d,
        decoder_attention_heads=heads,
        decoder_n_points=points,
        decoder_ffn_dim=ffn,
        num_feature_levels=1,
        dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    hf = DeformableDetrDecoderLayer(cfg).eval()
    mine = DeformableDecoderLayer(d, heads, points, ffn, 0.0).eval()
    for p in mine.parameters():
        torch.nn.init.normal_(p, std=0.2)
    rename = {
        "self_attn.out_proj": "self_attn.o_proj",
        "self_attn_norm": "self_attn_layer_norm",
        "cross_attn_norm": "encoder_attn_layer_norm",
        "cross_attn": "encoder_attn",
        "ffn.0": "mlp.fc1",
        "ffn.2": "mlp.fc2",
        "ffn_norm": "final_layer_norm",
    }
    state = {}
    for k, v in mine.state_dict().items():
        for old, new in rename.items():
            if k.startswith(old + "."):
                k = new + k[len(old) :]
                break
        state[k] = v
    hf.load_state_dict(state)
    x, pos = torch.randn(2, 6, d), torch.randn(2, 6, d)
    value = torch.randn(2, shape[0] * shape[1], d)
    ref = torch.rand(2, 6, 1, 2)
    with torch.no_grad():
        expected = hf(
            x,
            object_queries_position_embeddings=pos,
            reference_points=ref,
            spatial_shapes=torch.tensor([shape]),
            spatial_shapes_list=[shape],
            level_start_index=torch.tensor([0]),
            encoder_hidden_states=value,
        )
        got = mine(x, pos, ref, value, shape)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert torch.allclose(got, expected, atol=1e-5)


# ---- deformable attention core ----


def _identity_attention(width: int, heads: int, points: int) -> MultiScaleDeformableAttention:
    """Zero offsets, uniform weights, identity value/output projections: output = bilinear sample."""
    attn = MultiScaleDeformableAttention(width, heads=heads, levels=1, points=points)
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
        for lin in (attn.value_proj, attn.output_proj):
            lin.weight.copy_(torch.eye(width))
            lin.bias.zero_()
    return attn


def test_zero_offsets_at_patch_centres_return_the_patch_value() -> None:
    h, w, width = 3, 4, 4
    value = torch.arange(h * w * width, dtype=torch.float32).view(1, h * w, width)
    attn = _identity_attention(width, heads=2, points=3)
    # patch (row 1, col 2) has its centre at x = (2 + 0.5) / w, y = (1 + 0.5) / h
    ref = torch.tensor([[[[2.5 / w, 1.5 / h]], [[0.5 / w, 0.5 / h]]]])  # [1, Q=2, L=1, 2]
    out = attn(torch.randn(1, 2, width), ref, value, [(h, w)])
    assert torch.allclose(out[0, 0], value[0, 1 * w + 2], atol=1e-5)
    assert torch.allclose(out[0, 1], value[0, 0], atol=1e-5)


def test_between_patches_is_the_hand_computed_bilinear_mix() -> None:
    h, w, width = 3, 4, 2
    torch.manual_seed(0)
    value = torch.randn(1, h * w, width)
    attn = _identity_attention(width, heads=1, points=2)
    # pixel coords (x, y) = (1.25, 0.5): between columns 1-2 and rows 0-1
    ref = torch.tensor([[[[(1.25 + 0.5) / w, (0.5 + 0.5) / h]]]])
    out = attn(torch.randn(1, 1, width), ref, value, [(h, w)])[0, 0]
    v = value[0].view(h, w, width)
    by_hand = 0.75 * 0.5 * v[0, 1] + 0.25 * 0.5 * v[0, 2] + 0.75 * 0.5 * v[1, 1] + 0.25 * 0.5 * v[1, 2]
    assert torch.allclose(out, by_hand, atol=1e-6)


def test_outside_the_map_samples_zero() -> None:
    value = torch.ones(1, 4, 2)
    attn = _identity_attention(2, heads=1, points=1)
    out = attn(torch.zeros(1, 1, 2), torch.tensor([[[[1.5, 1.5]]]]), value, [(2, 2)])
    assert torch.equal(out, torch.zeros(1, 1, 2))


def test_offsets_start_radial_and_weights_uniform() -> None:
    attn = MultiScaleDeformableAttention(16, heads=4, levels=1, points=2)
    bias = attn.sampling_offsets.bias.view(4, 1, 2, 2)  # [heads, levels, points, (x, y)]
    assert torch.allclose(bias[0, 0], torch.tensor([[1.0, 0.0], [2.0, 0.0]]), atol=1e-6)  # head 0: +x
    assert torch.allclose(bias[1, 0], torch.tensor([[0.0, 1.0], [0.0, 2.0]]), atol=1e-6)  # head 1: +y
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    probs: list[torch.Tensor] = []
    attn.probe.register_forward_hook(lambda m, i, o: probs.append(o))
    attn(torch.randn(1, 3, 16), torch.rand(1, 3, 1, 2), torch.randn(1, 20, 16), [(4, 5)])
    assert torch.allclose(probs[0], torch.full((1, 4, 3, 2), 0.5))


def test_patch_attention_reproduces_the_sampled_output() -> None:
    torch.manual_seed(0)
    b, q, heads, dh = 2, 5, 3, 4
    shapes = [(4, 6), (2, 3)]
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, heads, dh)
    locs = torch.rand(b, q, heads, 2, 3, 2) * 1.2 - 0.1  # some points fall outside the map
    weights = torch.rand(b, q, heads, 2, 3).flatten(-2).softmax(-1).view(b, q, heads, 2, 3)
    out = deformable_sample(value, shapes, locs, weights)  # [B, Q, H*Dh]
    dense = patch_attention(
        weights.permute(0, 2, 1, 3, 4).flatten(3), locs.permute(0, 2, 1, 3, 4, 5).flatten(3, 4), shapes
    )  # [B, H, Q, S]
    via_patches = dense @ value.permute(0, 2, 1, 3)  # [B, H, Q, Dh]
    assert torch.allclose(out, via_patches.transpose(1, 2).flatten(2), atol=1e-5)
    assert (dense.sum(-1) <= 1 + 1e-5).all()  # a share of weight is lost only off the map
