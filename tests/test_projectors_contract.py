"""Every registered projector honours the same contract (shapes, counts, gradients, errors)."""

from __future__ import annotations

import pytest
import torch

from deco.errors import ConfigError, ShapeError
from deco.projectors import build_projector, projector_names
from deco.projectors.catalog import projector_catalog

DV, DL = 24, 40

# Tiny options per projector so the contract tests run in seconds; output grid 3x3 (M=9).
TINY: dict[str, dict] = {
    "linear": {},
    "mlp": {},
    "deco": {"grid": "3x3"},
    "qformer": {"num_queries": 9, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32},
    "cabstractor": {"num_queries": 9, "num_input_tokens": 36},
    "dabstractor": {"num_queries": 9, "num_layers": 2, "num_heads": 2, "num_input_tokens": 36},
    "resampler": {"num_latents": 9, "depth": 2, "heads": 2, "dim_head": 8},
    "attnpool": {"num_queries": 9, "heads": 2},
    "pixel_shuffle": {"scale_factor": 2},
    "ldpv2": {"grid": "3x3"},
    "tokenpacker": {"scale_factor": 2},
    # Video projectors: a single image is a 1-frame video, so their temporal targets are 1 here.
    "deco3d": {"target": "1x3x3", "num_frames": 1},
    "pllava": {"target": "1x3x3", "num_frames": 1},
    "deco_temporal": {"frames": 1, "num_frames": 1},
    "deco_spatial": {"grid": "3x3", "num_frames": 1},
    "qformer_video": {"num_queries": 9, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
                      "num_frames": 1, "max_frames": 4},
}

# Reference parameter counts (LLaVA's mlp2x_gelu, Honeybee's abstractors, BLIP-2's Q-Former) at Dv=1024, Dl=4096, N=576 (24x24).
REFERENCE_COUNTS = {
    ("linear", None): 4_198_400,
    ("mlp", None): 20_979_712,
    ("deco", 144): 20_979_712,
    ("deco", 64): 20_979_712,
    ("qformer", 32): 22_865_920,
    ("qformer", 144): 22_951_936,
    ("cabstractor", 144): 37_398_016,
    ("cabstractor", 64): 37_398_016,
    ("dabstractor", 144): 55_944_032,
    ("ldpv2", 144): 21_020_672,
    ("tokenpacker", 144): 36_722_688,
}


def test_registry_has_every_required_projector():
    required = {"linear", "mlp", "deco", "qformer", "cabstractor", "dabstractor", "resampler",
                "pixel_shuffle", "ldpv2", "attnpool"}
    assert required <= set(projector_names())
    assert set(TINY) == set(projector_names()), "add tiny options for new projectors to TINY"


def tiny(name: str):
    torch.manual_seed(0)
    return build_projector(name, DV, DL, TINY[name])


@pytest.mark.parametrize("name", projector_names())
@pytest.mark.parametrize("grid,batch", [((6, 6), 2), ((6, 8), 1), ((8, 8), 3)])
def test_output_shape_matches_num_tokens(name, grid, batch):
    proj = tiny(name).eval()
    m = proj.num_tokens(grid)
    out = proj(torch.randn(batch, grid[0] * grid[1], DV), grid)
    assert out.shape == (batch, m, DL)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", projector_names())
def test_gradient_reaches_every_parameter(name):
    proj = tiny(name).train()
    torch.manual_seed(1)
    out = proj(torch.randn(2, 36, DV), (6, 6))
    (out.square().mean()).backward()
    no_grad = [n for n, p in proj.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", projector_names())
def test_fixed_seed_is_deterministic(name):
    a, b = tiny(name).eval(), tiny(name).eval()
    x = torch.randn(2, 36, DV)
    assert torch.equal(a(x, (6, 6)), b(x, (6, 6)))


@pytest.mark.parametrize("name", projector_names())
def test_feature_count_not_matching_grid_is_a_shape_error(name):
    proj = tiny(name)
    with pytest.raises(ShapeError, match="N=35"):
        proj(torch.randn(1, 35, DV), (6, 6))


@pytest.mark.parametrize("name", projector_names())
def test_vision_width_mismatch_is_a_shape_error(name):
    proj = tiny(name)
    with pytest.raises(ShapeError, match="Dv=25"):
        proj(torch.randn(1, 36, DV + 1), (6, 6))


@pytest.mark.parametrize("name", ["deco", "ldpv2", "cabstractor"])
def test_pooling_to_a_larger_grid_is_refused(name):
    proj = tiny(name)
    with pytest.raises(ShapeError, match="larger|smaller|at least"):
        proj.num_tokens((2, 2))


@pytest.mark.parametrize("name", projector_names())
def test_unknown_option_is_a_config_error(name):
    with pytest.raises(ConfigError, match="no option"):
        build_projector(name, DV, DL, {"not_an_option": 1})


def test_unknown_projector_names_closest_match_and_valid_names():
    with pytest.raises(ConfigError) as info:
        build_projector("qformr", DV, DL)
    assert "qformer" in str(info.value) and "Did you mean" in str(info.value)
    assert "deco" in str(info.value)
    with pytest.raises(ConfigError):
        build_projector("Deco", DV, DL)  # exact names only, no case folding or substrings


@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_config_errors(value):
    with pytest.raises(ConfigError):
        build_projector("deco", DV, DL, {"grid": value})
    with pytest.raises(ConfigError):
        build_projector("mlp", DV, value)


@pytest.mark.parametrize("key,expected", list(REFERENCE_COUNTS.items()), ids=lambda v: str(v))
def test_reference_parameter_counts(key, expected):
    name, tokens = key
    rows = {r["name"]: r for r in projector_catalog(1024, 4096, "24x24", tokens)}
    assert rows[name]["params"] == expected
    if tokens is not None:
        assert rows[name]["tokens"] == tokens


def test_qformer_blip2_full_size_count():
    with torch.device("meta"):
        proj = build_projector(
            "qformer", 1024, 4096, {"num_hidden_layers": 12, "cross_attention_frequency": 2, "num_queries": 32}
        )
    assert proj.num_parameters() == 104_773_120


def test_deco_pools_then_projects_uneven_grid():
    torch.manual_seed(0)
    proj = build_projector("deco", DV, DL, {"grid": "4x3"}).eval()
    x = torch.randn(2, 7 * 5, DV)
    out = proj(x, (7, 5))
    pooled = torch.nn.functional.adaptive_avg_pool2d(x.transpose(1, 2).reshape(2, DV, 7, 5), (4, 3))
    expected = proj.mlp(pooled.flatten(2).transpose(1, 2))
    assert out.shape == (2, 12, DL)
    torch.testing.assert_close(out, expected)
