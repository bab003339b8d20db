"""Pixel shuffle, LDPv2 and TokenPacker: what is specific to each (the shared contract is tested elsewhere)."""

from __future__ import annotations

import pytest
import torch

from deco.errors import ConfigError, ShapeError
from deco.projectors import build_projector
from deco.projectors.pooling import grid_pool

DV, DL = 16, 24  # tiny widths; 16 is divisible by TokenPacker's 8 heads


def tiny(name: str, **options: object):
    torch.manual_seed(0)
    return build_projector(name, DV, DL, options)


def features(grid: tuple[int, int], batch: int = 2, width: int = DV, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, grid[0] * grid[1], width, generator=gen)


def changed_tokens(proj, grid: tuple[int, int], patch: int) -> list[int]:
    """Output tokens that move when one input patch is perturbed."""
    x = features(grid, batch=1)
    y = x.clone()
    y[0, patch] += 1.0
    with torch.no_grad():
        diff = (proj(x, grid) - proj(y, grid)).abs().amax(dim=-1)[0]  # [M]
    return torch.nonzero(diff > 1e-6).flatten().tolist()


# --- parameter counts at Dv=1024, Dl=4096 (built on the meta device: no memory, instant) ---


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("ldpv2", {}, 21_020_672),  # reference: mlp2x_gelu 20,979,712 + depthwise conv 4096*9 + 4096
        ("tokenpacker", {}, 36_722_688),  # reference implementation's count
        # LayerNorm(4096) + Linear(4096->4096) + Linear(4096->4096)
        ("pixel_shuffle", {}, 2 * 4096 + 2 * (4096 * 4096 + 4096)),
        ("pixel_shuffle", {"layer_norm": False}, 2 * (4096 * 4096 + 4096)),
    ],
)
def test_parameter_count_at_llava_size(name: str, options: dict, expected: int) -> None:
    with torch.device("meta"):
        proj = build_projector(name, 1024, 4096, options)
    assert proj.num_parameters() == expected


def test_tokenpacker_single_level_count_drops_the_extra_key_value_inputs() -> None:
    with torch.device("meta"):
        proj = build_projector("tokenpacker", 1024, 4096, {"levels": 1})
    # k and v first layers shrink from 4096 to 1024 inputs.
    assert proj.num_parameters() == 36_722_688 - 2 * 3 * 1024 * 1024


# --- shapes ---


@pytest.mark.parametrize(
    ("name", "options", "grid", "tokens"),
    [
        ("pixel_shuffle", {}, (24, 24), 144),
        ("pixel_shuffle", {}, (12, 12), 36),
        ("pixel_shuffle", {}, (8, 12), 24),
        ("pixel_shuffle", {"scale_factor": 3}, (12, 12), 16),
        ("pixel_shuffle", {"pad": True}, (7, 7), 16),
        ("ldpv2", {}, (24, 24), 144),
        ("ldpv2", {}, (12, 12), 144),
        ("ldpv2", {"grid": "4x6"}, (8, 12), 24),
        ("ldpv2", {"grid": 5}, (7, 7), 25),
        ("tokenpacker", {}, (24, 24), 144),
        ("tokenpacker", {}, (12, 12), 36),
        ("tokenpacker", {}, (8, 12), 24),
        ("tokenpacker", {"scale_factor": 4}, (8, 12), 6),
    ],
)
def test_output_shape_matches_num_tokens(
    name: str, options: dict, grid: tuple[int, int], tokens: int
) -> None:
    proj = tiny(name, **options)
    assert proj.num_tokens(grid) == tokens
    out = proj(features(grid, batch=3), grid)
    assert out.shape == (3, tokens, DL)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "options", "grid", "match"),
    [
        ("pixel_shuffle", {}, (7, 7), "7x7"),
        ("pixel_shuffle", {"scale_factor": 3}, (8, 12), "8x12"),
        ("ldpv2", {}, (8, 12), "larger than the input patch grid 8x12"),
        ("ldpv2", {"grid": 8}, (8, 6), "8x6"),
        ("tokenpacker", {}, (7, 7), "7x7"),
        ("tokenpacker", {"scale_factor": 5}, (12, 12), "12x12"),
    ],
)
def test_bad_grid_is_a_shape_error_naming_the_grid(name: str, options: dict, grid: tuple, match: str) -> None:
    proj = tiny(name, **options)
    with pytest.raises(ShapeError, match=match):
        proj.num_tokens(grid)
    with pytest.raises(ShapeError, match=match):
        proj(features(grid), grid)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("pixel_shuffle", {"scale_factor": 0}, "scale_factor"),
        ("pixel_shuffle", {"scale_factor": 2.0}, "scale_factor"),
        ("pixel_shuffle", {"pad": "yes"}, "pad"),
        ("pixel_shuffle", {"layer_norm": 1}, "layer_norm"),
        ("ldpv2", {"grid": "12xa"}, "grid"),
        ("ldpv2", {"grid": 0}, "grid"),
        ("ldpv2", {"pool": 12}, "pool"),
        ("tokenpacker", {"num_heads": 3}, "num_heads"),  # 3 does not divide 16
        ("tokenpacker", {"levels": 0}, "levels"),
        ("tokenpacker", {"embed_dim": -8}, "embed_dim"),
        ("tokenpacker", {"scale_factor": True}, "scale_factor"),
    ],
)
def test_bad_options_are_config_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_projector(name, DV, DL, options)


def test_gradient_reaches_every_parameter() -> None:
    grid = (4, 6)
    for name, options in [
        ("pixel_shuffle", {}),
        ("pixel_shuffle", {"pad": True, "scale_factor": 3}),
        ("ldpv2", {"grid": "2x3"}),
        ("tokenpacker", {"num_heads": 2}),
    ]:
        proj = tiny(name, **options)
        proj(features(grid), grid).square().mean().backward()
        for pname, param in proj.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


# --- pixel shuffle ---


def test_pixel_shuffle_concatenates_each_neighbourhood_in_documented_order() -> None:
    from deco.projectors.pixel_shuffle import space_to_depth

    h, w, s = 4, 6, 2
    # Patch (r, c) carries the vector [r, c]: the merged token must list its neighbours by (di, dj).
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    x = torch.stack([rows, cols], dim=-1).reshape(1, h * w, 2).float()
    merged = space_to_depth(x, (h, w), s)  # [1, 6, 8]
    for i in range(h // s):
        for j in range(w // s):
            expected = [v for di in range(s) for dj in range(s) for v in (i * s + di, j * s + dj)]
            assert merged[0, i * (w // s) + j].tolist() == expected


def test_pixel_shuffle_neighbouring_patches_land_in_the_same_token() -> None:
    proj = tiny("pixel_shuffle")
    grid = (4, 6)  # output 2x3; patches 0, 1, 6, 7 form token 0; patch 9 = (1, 3) -> token 1
    for patch in (0, 1, 6, 7):
        assert changed_tokens(proj, grid, patch) == [0]
    assert changed_tokens(proj, grid, 9) == [1]
    assert changed_tokens(proj, grid, 23) == [5]


def test_pixel_shuffle_pad_equals_explicit_zero_padding() -> None:
    proj = tiny("pixel_shuffle", pad=True)
    x = features((3, 5), batch=1)
    padded = torch.zeros(1, 4, 6, DV)
    padded[:, :3, :5] = x.reshape(1, 3, 5, DV)
    with torch.no_grad():
        assert torch.allclose(proj(x, (3, 5)), proj(padded.reshape(1, 24, DV), (4, 6)), atol=1e-6)


def test_pixel_shuffle_layer_norm_flag() -> None:
    assert isinstance(tiny("pixel_shuffle").norm, torch.nn.LayerNorm)
    assert isinstance(tiny("pixel_shuffle", layer_norm=False).norm, torch.nn.Identity)


# --- LDPv2 ---


def test_ldpv2_pools_after_the_mlp() -> None:
    proj = tiny("ldpv2", grid="3x4")
    with torch.no_grad():
        proj.peg.weight.zero_()
        proj.peg.bias.zero_()
        x, grid = features((6, 8)), (6, 8)
        out = proj(x, grid)
        assert torch.allclose(out, grid_pool(proj.mlp(x), grid, (3, 4)), atol=1e-6)
        # and not before it (that would be DeCo's order; GELU makes the two differ)
        assert not torch.allclose(out, proj.mlp(grid_pool(x, grid, (3, 4))), atol=1e-4)


def test_ldpv2_position_encoding_is_a_depthwise_residual() -> None:
    proj = tiny("ldpv2", grid="3x4")
    assert proj.peg.weight.shape == (DL, 1, 3, 3) and proj.peg.groups == DL
    with torch.no_grad():
        # a centre-tap weight of 1 and zero bias doubles every pooled value (x + conv(x) = 2x)
        proj.peg.weight.zero_()
        proj.peg.weight[:, 0, 1, 1] = 1.0
        proj.peg.bias.zero_()
        x, grid = features((6, 8)), (6, 8)
        assert torch.allclose(proj(x, grid), 2 * grid_pool(proj.mlp(x), grid, (3, 4)), atol=1e-6)


# --- TokenPacker ---


def test_tokenpacker_region_index_layout() -> None:
    proj = tiny("tokenpacker")
    index = proj.region_index((4, 6))
    assert index.shape == (6, 4)
    assert index[0].tolist() == [0, 1, 6, 7]
    assert index[1].tolist() == [2, 3, 8, 9]
    assert index[3].tolist() == [12, 13, 18, 19]
    assert sorted(index.flatten().tolist()) == list(range(24))  # every patch in exactly one region


def test_tokenpacker_each_query_only_sees_its_region() -> None:
    proj = tiny("tokenpacker", num_heads=2)
    grid = (4, 6)
    index = proj.region_index(grid)
    for patch in (0, 7, 9, 23):
        owner = int((index == patch).any(dim=1).nonzero())
        assert changed_tokens(proj, grid, patch) == [owner]


def test_tokenpacker_attention_passes_the_probe_and_maps_to_patches() -> None:
    proj = tiny("tokenpacker", num_heads=4)
    grid = (4, 6)
    seen: list[torch.Tensor] = []
    proj.probe.register_forward_hook(lambda _m, _i, out: seen.append(out))
    proj(features(grid), grid)
    assert proj.probe.kind == "cross"
    (probs,) = seen
    assert probs.shape == (2, 4, 6, 4)  # [B, heads, M, s*s]
    dense = proj.patch_attention(probs, grid)
    assert dense.shape == (2, 4, 6, 24)
    assert torch.allclose(dense.sum(-1), torch.ones(2, 4, 6))
    outside = torch.ones(6, 24, dtype=torch.bool)
    outside.scatter_(1, proj.region_index(grid), False)
    assert (dense[..., outside] == 0).all()
    assert (dense[..., ~outside] > 0).all()


def test_tokenpacker_queries_are_the_two_by_two_means() -> None:
    proj = tiny("tokenpacker")
    seen: list[torch.Tensor] = []
    proj.q_proj.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    x, grid = features((6, 8)), (6, 8)
    proj(x, grid)
    assert torch.allclose(seen[0], grid_pool(x, grid, (3, 4)), atol=1e-6)


def test_tokenpacker_multi_level_features() -> None:
    proj = tiny("tokenpacker", levels=2)
    x, grid = features((4, 4)), (4, 4)
    with torch.no_grad():
        default = proj(x, grid)
        assert torch.allclose(proj(x, grid, multi_level=torch.cat([x, x], dim=-1)), default)
        other = proj(x, grid, multi_level=features((4, 4), width=2 * DV, seed=5))
        assert other.shape == default.shape and not torch.allclose(other, default)
        with pytest.raises(ShapeError, match="levels"):
            proj(x, grid, multi_level=features((4, 4), width=3 * DV))
        assert proj._multi_level is None  # nothing left behind after an error
