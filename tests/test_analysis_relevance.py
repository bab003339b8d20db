"""Query-to-Patch relevance: the rules, every projector's route, and constructed cases with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deco.analysis.hooks import capture_probes
from deco.analysis.query_patch import default_route, query_to_patch
from deco.analysis.relevance import decoder_relevance, decoder_row, normalise_residual
from deco.errors import ConfigError
from deco.projectors import build_projector, projector_names
from deco.projectors.attention import AttentionProbe
from deco.projectors.base import Projector, ProjectorConfig
from deco.projectors.pooling import pooling_matrix
from deco.projectors.video import video_pooling_matrix

DV, DL, GRID = 32, 48, (12, 12)
TINY = {
    "linear": {},
    "mlp": {},
    "deco": {"grid": "5x5"},
    "qformer": {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, "num_queries": 9},
    "cabstractor": {"grid": "3x3", "depth": 1, "num_input_tokens": 144},
    "dabstractor": {"grid": "3x3", "num_layers": 2, "num_heads": 4, "ffn_width": 32, "num_input_tokens": 144},
    "resampler": {"depth": 2, "num_latents": 9, "heads": 2, "dim_head": 16},
    "attnpool": {"num_queries": 9, "heads": 4},
    "pixel_shuffle": {},
    "ldpv2": {"grid": "4x4"},
    "tokenpacker": {"num_heads": 4, "levels": 2},
    # video projectors on a single image (a 1-frame video)
    "deco3d": {"target": "1x4x4", "num_frames": 1},
    "pllava": {"target": "1x3x3", "num_frames": 1},
    "deco_temporal": {"frames": 1, "num_frames": 1},
    "deco_spatial": {"grid": "4x4", "num_frames": 1},
    "qformer_video": {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, "num_queries": 9,
                      "num_frames": 1},
}
EXPECTED_ROUTE = {
    "deco": "exact", "qformer": "attention", "resampler": "attention", "attnpool": "attention",
    "dabstractor": "attention", "tokenpacker": "attention", "mlp": "gradient", "linear": "gradient",
    "pixel_shuffle": "gradient", "cabstractor": "gradient", "ldpv2": "gradient", "deco3d": "exact",
    "pllava": "exact", "deco_temporal": "exact", "deco_spatial": "exact", "qformer_video": "attention",
}


def tiny(name: str) -> Projector:
    torch.manual_seed(0)
    return build_projector(name, DV, DL, TINY[name])


def test_every_registered_projector_has_a_route() -> None:
    assert set(projector_names()) == set(TINY) == set(EXPECTED_ROUTE)


@pytest.mark.parametrize("name", sorted(TINY))
def test_maps_are_finite_nonnegative_and_rows_sum_to_one(name: str) -> None:
    proj = tiny(name)
    features = torch.randn(1, 144, DV)
    result = query_to_patch(proj, features, GRID, chunk_size=5)
    m = proj.num_tokens(GRID)
    assert result.route == EXPECTED_ROUTE[name] == default_route(proj)
    assert result.maps.shape == result.raw.shape == (1, m, 144)
    assert torch.isfinite(result.raw).all() and (result.raw >= 0).all()
    assert result.zero_rows == 0
    torch.testing.assert_close(result.maps.sum(-1), torch.ones(1, m))
    assert not result.maps.requires_grad  # read off, not kept in an autograd graph


def test_deco_exact_map_is_the_pooling_matrix_and_the_gradient_route_agrees() -> None:
    proj = tiny("deco")
    features = torch.randn(1, 144, DV)
    exact = query_to_patch(proj, features, GRID, route="exact")
    pool = pooling_matrix(GRID, (5, 5)).float()  # 12 -> 5: overlapping adaptive windows
    torch.testing.assert_close(exact.maps[0], pool)
    gradient = query_to_patch(proj, features, GRID, route="gradient")
    torch.testing.assert_close(gradient.maps[0], pool, atol=1e-5, rtol=1e-4)
    assert exact.out_grid == (5, 5)


def test_video_pooling_map_is_the_3d_pooling_matrix_and_the_gradient_route_agrees() -> None:
    torch.manual_seed(0)
    proj = build_projector("deco3d", DV, DL, {"target": "2x3x3", "num_frames": 3})
    features = torch.randn(1, 3 * 36, DV)  # 3 frames of 6x6, frame-major
    exact = query_to_patch(proj, features, (3, 6, 6))
    gradient = query_to_patch(proj, features, (3, 6, 6), route="gradient")
    expected = video_pooling_matrix((3, 6, 6), (2, 3, 3)).float()
    torch.testing.assert_close(exact.maps[0], expected)
    torch.testing.assert_close(gradient.maps[0], expected, atol=1e-5, rtol=1e-4)
    assert exact.route == "exact" and exact.out_grid is None  # tokens span (t, h, w)


def test_per_patch_mlp_depends_on_its_own_patch_only() -> None:
    result = query_to_patch(tiny("mlp"), torch.randn(1, 144, DV), GRID)
    torch.testing.assert_close(result.maps[0], torch.eye(144))


def test_pixel_shuffle_token_depends_on_its_two_by_two_block() -> None:
    result = query_to_patch(tiny("pixel_shuffle"), torch.randn(1, 144, DV), GRID)
    support = result.maps[0, 7] > 0  # token (1, 1) of the 6x6 output grid
    rows, cols = support.reshape(12, 12).nonzero().T
    assert sorted(set(rows.tolist())) == [2, 3] and sorted(set(cols.tolist())) == [2, 3]


def one_patch_attnpool(targets: list[int]) -> tuple[Projector, torch.Tensor]:
    """Query m attends (almost) only to patch targets[m]: a constructed one-patch dependency."""
    torch.manual_seed(0)
    proj = build_projector("attnpool", DV, DL, {"num_queries": len(targets), "heads": 1})
    with torch.no_grad():
        for lin in (proj.q_proj, proj.k_proj):
            lin.weight.copy_(torch.eye(DV))
            lin.bias.zero_()
        proj.queries.zero_()
        features = torch.zeros(1, 144, DV)
        for m, patch in enumerate(targets):
            proj.queries[m, m] = 200.0
            features[0, patch, m] = 1.0
        features[0, :, len(targets):] = torch.randn(144, DV - len(targets))  # content in other channels
    return proj, features


def test_attention_route_puts_a_one_patch_token_on_that_patch() -> None:
    targets = [5, 77, 140]
    proj, features = one_patch_attnpool(targets)
    result = query_to_patch(proj, features, GRID)
    for m, patch in enumerate(targets):
        assert result.maps[0, m].argmax() == patch
        assert result.maps[0, m, patch] > 0.99


def test_single_cross_attention_layer_gives_head_mean_of_gradient_times_attention() -> None:
    proj = tiny("attnpool").eval()
    features = torch.randn(1, 144, DV)
    result = query_to_patch(proj, features, GRID)
    m = 4  # by hand: one copy, explain token m's self-projection
    x = features.clone().requires_grad_(True)
    with capture_probes(proj) as capture:
        out = proj(x, GRID)
    (record,) = capture.records
    (grad,) = torch.autograd.grad((out[0, m] * out[0, m].detach()).sum(), record.probs)
    expected = (grad * record.probs).clamp(min=0).mean(1)[0, m]  # [N]
    torch.testing.assert_close(result.raw[0, m], expected.detach())


def test_tokenpacker_relevance_stays_inside_each_query_region() -> None:
    proj = tiny("tokenpacker")
    result = query_to_patch(proj, torch.randn(1, 144, DV), GRID)
    outside = torch.ones(36, 144, dtype=torch.bool)
    outside.scatter_(1, proj.region_index(GRID), False)
    assert (result.raw[0][outside] == 0).all() and (result.raw[0][~outside] > 0).any()


def test_dabstractor_relevance_lies_near_each_query_reference_point() -> None:
    proj = tiny("dabstractor")
    result = query_to_patch(proj, torch.randn(1, 144, DV), GRID)
    centre_rows = (result.maps[0] @ (torch.arange(144) // 12).float())  # relevance-weighted row
    # Row-major 3x3 queries: top-row queries look higher in the image than bottom-row ones.
    assert centre_rows[:3].mean() < centre_rows[3:6].mean() < centre_rows[6:].mean()


def test_residual_normalisation_keeps_identity_and_normalises_the_rest() -> None:
    eye = torch.eye(4).expand(2, 4, 4)
    torch.testing.assert_close(normalise_residual(eye), eye)
    r = eye + torch.rand(2, 4, 4)
    torch.testing.assert_close((normalise_residual(r) - torch.eye(4)).sum(-1), torch.ones(2, 4))


def test_decoder_row_equals_the_full_accumulation_from_identity() -> None:
    torch.manual_seed(0)
    cams = [torch.rand(3, 7, 7).tril() for _ in range(4)]
    positions = torch.tensor([6, 3, 0])
    full = decoder_relevance(cams)
    torch.testing.assert_close(decoder_row(cams, positions), full[torch.arange(3), positions])


def test_requesting_a_map_that_does_not_exist_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no exact Query-to-Patch map"):
        query_to_patch(tiny("qformer"), torch.randn(1, 144, DV), GRID, route="exact")
    with pytest.raises(ConfigError, match="no AttentionProbe modules"):
        query_to_patch(tiny("mlp"), torch.randn(1, 144, DV), GRID, route="attention")
    with pytest.raises(ConfigError, match="unknown Query-to-Patch route"):
        query_to_patch(tiny("mlp"), torch.randn(1, 144, DV), GRID, route="lrp")


class OddKeys(Projector):
    """A probe over keys that are neither the patches nor [patches ; queries]."""

    name = "oddkeys"

    def __init__(self) -> None:
        super().__init__(ProjectorConfig(), DV, DL)
        self.probe = AttentionProbe("cross")
        self.out = nn.Linear(DV, DL)

    def num_tokens(self, grid: tuple[int, int]) -> int:
        return 4

    def project(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        keys = features[:, :10]  # [B, 10, Dv]
        probs = self.probe((features[:, :4] @ keys.transpose(1, 2)).softmax(-1).unsqueeze(1))  # [B, 1, 4, 10]
        return self.out(probs[:, 0] @ keys)


class DetachedProbe(OddKeys):
    """A probe whose map never reaches the output."""

    name = "detached"

    def project(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        self.probe((features[:, :4] @ features.transpose(1, 2)).softmax(-1).unsqueeze(1).detach())
        return self.out(features[:, :4])


def test_unmappable_or_gradient_free_attention_names_the_module() -> None:
    with pytest.raises(ConfigError, match=r"'probe' \(OddKeys.*10 keys"):
        query_to_patch(OddKeys(), torch.randn(1, 144, DV), GRID)
    with pytest.raises(ConfigError, match="'probe' received no gradient"):
        query_to_patch(DetachedProbe(), torch.randn(1, 144, DV), GRID)


def test_training_mode_is_restored_after_explaining() -> None:
    proj = tiny("qformer").train()
    query_to_patch(proj, torch.randn(1, 144, DV), GRID)
    assert all(m.training for m in proj.modules())


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        query_to_patch(tiny("attnpool"), torch.randn(1, 144, DV), GRID, chunk_size=0)
