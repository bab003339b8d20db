"""Spatio-temporal projectors: token counts, pooling order (DeCo vs PLLaVA), time order, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deco.errors import ConfigError, ShapeError
from deco.projectors import build_projector
from deco.projectors.video import parse_grid3, video_pool, video_pooling_matrix

DV, DL = 8, 8
QF = {"num_queries": 5, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}

CASES = {
    # name: (options, input grid, expected tokens)
    "deco3d": ({"target": "2x3x3", "num_frames": 4}, (4, 6, 6), 18),
    "pllava": ({"target": "2x3x3", "num_frames": 4}, (4, 6, 6), 18),
    "deco_temporal": ({"frames": 2, "num_frames": 4}, (4, 6, 6), 72),
    "deco_spatial": ({"grid": "3x2", "num_frames": 4}, (4, 6, 6), 24),
    "qformer_video": ({**QF, "num_frames": 4}, (4, 6, 6), 5),
}


def build(name, options, dv=DV, dl=DL):
    torch.manual_seed(0)
    return build_projector(name, dv, dl, options).eval()


def video(b, grid, d=DV):
    f, h, w = grid
    return torch.randn(b, f * h * w, d)


@pytest.mark.parametrize("name", list(CASES))
def test_token_count_is_known_before_running_and_matches_output(name):
    options, grid, expected = CASES[name]
    proj = build(name, options)
    assert proj.num_tokens(grid) == expected
    out = proj(video(2, grid), grid)
    assert out.shape == (2, expected, DL)
    assert proj.supports_time and proj.num_frames == 4


@pytest.mark.parametrize("name", ["deco3d", "pllava", "deco_temporal", "deco_spatial", "qformer_video"])
def test_a_single_image_is_a_one_frame_video(name):
    options = {**CASES[name][0], "num_frames": 1}
    if "target" in options:
        options["target"] = "1x3x3"
    if "frames" in options:
        options["frames"] = 1
    proj = build(name, options)
    x = torch.randn(2, 36, DV)
    torch.testing.assert_close(proj(x, (6, 6)), proj(x, (1, 6, 6)))
    assert proj.num_tokens((6, 6)) == proj.num_tokens((1, 6, 6))


def test_deco3d_pools_raw_features_then_applies_the_mlp():
    proj = build("deco3d", {"target": "2x3x2", "num_frames": 4})
    x = video(2, (4, 6, 5))
    cube = x.transpose(1, 2).reshape(2, DV, 4, 6, 5)
    pooled = F.adaptive_avg_pool3d(cube, (2, 3, 2)).flatten(2).transpose(1, 2)  # time-major (t, h, w)
    torch.testing.assert_close(proj(x, (4, 6, 5)), proj.mlp(pooled))


def test_pllava_applies_the_mlp_first_then_pools_in_llm_width():
    proj = build("pllava", {"target": "2x3x2", "num_frames": 4}, dl=12)
    x = video(2, (4, 6, 5))
    y = proj.mlp(x)  # [B, F*N, Dl]
    cube = y.transpose(1, 2).reshape(2, 12, 4, 6, 5)
    expected = F.adaptive_avg_pool3d(cube, (2, 3, 2)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(proj(x, (4, 6, 5)), expected)


def _set_identity_mlp(proj):
    """mlp = Linear(I), GELU, Linear(I) with zero biases: the MLP is then exactly GELU."""
    with torch.no_grad():
        for layer in proj.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.eye(layer.weight.shape[0]))
                layer.bias.zero_()


def test_orders_differ_exactly_as_gelu_of_mean_vs_mean_of_gelu():
    # Frame 0 is -3 everywhere, frame 1 is +3: pooling over time gives 0 before the MLP (DeCo order),
    # but averages GELU(-3) and GELU(3) after it (PLLaVA order).
    deco, pllava = (build(n, {"target": "1x1x1", "num_frames": 2}) for n in ("deco3d", "pllava"))
    for proj in (deco, pllava):
        _set_identity_mlp(proj)
    x = torch.cat([torch.full((1, 4, DV), -3.0), torch.full((1, 4, DV), 3.0)], dim=1)  # 2 frames of 2x2
    gelu = torch.nn.GELU()
    torch.testing.assert_close(deco(x, (2, 2, 2)), torch.zeros(1, 1, DL))
    expected = (gelu(torch.tensor(-3.0)) + gelu(torch.tensor(3.0))) / 2
    torch.testing.assert_close(pllava(x, (2, 2, 2)), torch.full((1, 1, DL), float(expected)))
    assert float(expected) > 1.4


def test_orders_agree_when_the_mlp_is_affine_or_zeroed():
    # Pooling is a convex average, so it commutes with any affine map (depth 1): both orders agree.
    deco = build("deco3d", {"target": "2x2x2", "num_frames": 4, "mlp_depth": 1})
    pllava = build("pllava", {"target": "2x2x2", "num_frames": 4, "mlp_depth": 1})
    pllava.load_state_dict(deco.state_dict())
    x = video(2, (4, 4, 4))
    torch.testing.assert_close(deco(x, (4, 4, 4)), pllava(x, (4, 4, 4)))
    # A zeroed first layer makes every token the same constant, whatever the order.
    deep_d, deep_p = (build(n, {"target": "2x2x2", "num_frames": 4}) for n in ("deco3d", "pllava"))
    deep_p.load_state_dict(deep_d.state_dict())
    with torch.no_grad():
        deep_d.mlp[0].weight.zero_()
        deep_p.mlp[0].weight.zero_()
    a, b = deep_d(x, (4, 4, 4)), deep_p(x, (4, 4, 4))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, a[:, :1].expand_as(a))


def _pure_pooling(name, options):
    proj = build(name, {**options, "mlp_depth": 1})
    with torch.no_grad():
        proj.mlp[0].weight.copy_(torch.eye(DV))
        proj.mlp[0].bias.zero_()
    return proj


def test_tokens_are_time_major_and_each_variant_pools_only_its_axes():
    # Frame f holds the value f everywhere; an identity MLP leaves pure pooling to look at.
    frames = torch.arange(4.0).repeat_interleave(9)  # 4 frames of 3x3
    x = frames[None, :, None].expand(1, 36, DV).contiguous()
    grid = (4, 3, 3)
    spatial = _pure_pooling("deco_spatial", {"grid": 1, "num_frames": 4})(x, grid)
    torch.testing.assert_close(spatial[0, :, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))  # one token per frame
    temporal = _pure_pooling("deco_temporal", {"frames": 2, "num_frames": 4})(x, grid)
    assert temporal.shape[1] == 2 * 9  # full 3x3 grid kept per pooled frame
    torch.testing.assert_close(temporal[0, :, 0], torch.tensor([0.5] * 9 + [2.5] * 9))
    cube = _pure_pooling("deco3d", {"target": "2x1x1", "num_frames": 4})(x, grid)
    torch.testing.assert_close(cube[0, :, 0], torch.tensor([0.5, 2.5]))


def test_video_pooling_matrix_is_the_exact_linear_map():
    mat = video_pooling_matrix((4, 3, 5), (2, 2, 3))
    assert mat.shape == (12, 60)
    torch.testing.assert_close(mat.sum(1), torch.ones(12, dtype=torch.float64))
    x = torch.randn(1, 60, 3, dtype=torch.float64)
    torch.testing.assert_close(video_pool(x, (4, 3, 5), (2, 2, 3))[0], mat @ x[0])


def test_qformer_video_reuses_the_qformer_and_tells_frames_apart():
    proj = build("qformer_video", {**QF, "num_frames": 3})
    keys = set(proj.state_dict())
    assert {"query_tokens", "language_projection.weight", "frame_position_embedding"} <= keys
    assert any(k.startswith("qformer.encoder.layer.0.crossattention.") for k in keys)
    x = video(1, (3, 2, 2))
    swapped = x.view(1, 3, 4, DV)[:, [2, 1, 0]].reshape(1, 12, DV)
    with torch.no_grad():  # as if trained: distinct frame positions and sharp (not uniform) attention
        proj.frame_position_embedding.normal_()
        for name, p in proj.named_parameters():
            if ".crossattention.attention." in name and name.endswith("weight"):
                p.normal_()
    assert (proj(x, (3, 2, 2)) - proj(swapped, (3, 2, 2))).abs().max() > 1e-3
    with torch.no_grad():
        proj.frame_position_embedding.zero_()  # without frame positions the queries see a bag of patches
    torch.testing.assert_close(proj(x, (3, 2, 2)), proj(swapped, (3, 2, 2)))


def test_reference_parameter_counts_at_llava_size():
    with torch.device("meta"):
        counts = {n: build_projector(n, 1024, 4096).num_parameters()
                  for n in ("deco3d", "pllava", "deco_temporal", "deco_spatial", "qformer_video")}
    # The MLP is LLaVA's mlp2x_gelu (as DeCo and LLaVA-1.5 use it); pooling adds nothing; the video Q-Former adds
    # its 32 x 1024 frame-position table to the 2-layer Q-Former's 22,865,920.
    assert counts["deco3d"] == counts["pllava"] == counts["deco_temporal"] == counts["deco_spatial"] == 20_979_712
    assert counts["qformer_video"] == 22_865_920 + 32 * 1024


def test_pllava_default_is_16_frames_pooled_to_16x12x12():
    with torch.device("meta"):
        proj = build_projector("pllava", 1024, 4096)
    assert proj.num_frames == 16
    assert proj.num_tokens((16, 24, 24)) == 16 * 12 * 12


@pytest.mark.parametrize("name,options", [("deco3d", {"target": "4x3x3", "num_frames": 4}),
                                          ("pllava", {"target": "4x3x3", "num_frames": 4}),
                                          ("deco_temporal", {"frames": 4, "num_frames": 4})])
def test_fewer_frames_than_the_temporal_target_is_a_shape_error(name, options):
    proj = build(name, options)
    with pytest.raises(ShapeError, match="3 frame.*temporal target is 4"):
        proj.num_tokens((3, 6, 6))
    with pytest.raises(ShapeError, match="3 frame.*temporal target is 4"):
        proj(video(1, (3, 6, 6)), (3, 6, 6))
    with pytest.raises(ShapeError, match="1 frame"):
        proj.num_tokens((6, 6))  # an image is one frame


def test_pooling_up_in_space_is_refused():
    with pytest.raises(ShapeError, match="larger than the input patch grid"):
        build("deco3d", {"target": "1x8x8", "num_frames": 1}).num_tokens((2, 6, 6))
    with pytest.raises(ShapeError, match="larger than the input patch grid"):
        build("deco_spatial", {"grid": "7x7"}).num_tokens((4, 6, 6))


def test_feature_count_must_match_the_time_grid():
    proj = build("deco3d", {"target": "2x3x3", "num_frames": 4})
    with pytest.raises(ShapeError, match="N=143.*4 frames x 6x6 declares 144"):
        proj(torch.randn(1, 143, DV), (4, 6, 6))
    with pytest.raises(ShapeError, match="grid must be"):
        proj.num_tokens((1, 4, 6, 6))


def test_qformer_video_refuses_more_frames_than_its_position_table():
    proj = build("qformer_video", {**QF, "num_frames": 2, "max_frames": 3})
    with pytest.raises(ShapeError, match="4 frames.*max_frames=3"):
        proj.num_tokens((4, 2, 2))
    with pytest.raises(ConfigError, match="num_frames'=5 exceeds 'max_frames'=3"):
        build("qformer_video", {**QF, "num_frames": 5, "max_frames": 3})


@pytest.mark.parametrize("name,options,match", [
    ("deco3d", {"target": "8x12x12", "num_frames": 4}, "num_frames'=4 is smaller than the temporal target=8"),
    ("deco_temporal", {"frames": 8, "num_frames": 4}, "smaller than 'frames'=8"),
    ("pllava", {"target": "12x12"}, "three positive ints"),
    ("pllava", {"target": "ax2x2"}, "16x12x12"),
    ("deco3d", {"num_frames": 0}, "num_frames"),
    ("deco3d", {"activation": "tanh"}, "activation"),
])
def test_bad_options_are_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_projector(name, DV, DL, options)


def test_parse_grid3_accepts_strings_and_lists():
    assert parse_grid3("16x12x12") == (16, 12, 12)
    assert parse_grid3([2, 3, 4]) == (2, 3, 4)
    with pytest.raises(ConfigError):
        parse_grid3([2, 0, 4])
