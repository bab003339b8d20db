"""Redundancy, coverage and spatial-fidelity metrics on cases with known values."""

from __future__ import annotations

import math

import pytest
import torch

from deco.analysis.metrics import (
    coverage,
    redundancy,
    relevance_centres,
    spatial_fidelity,
    spearman,
    square_factors,
)
from deco.projectors.pooling import pooling_matrix


def test_identical_tokens_are_all_near_duplicates_and_orthogonal_ones_none() -> None:
    same = torch.ones(2, 5, 8)
    r = redundancy(same)
    assert r["within_mean_cos"] == pytest.approx(1.0) and r["within_near_duplicate_fraction"] == 1.0
    assert r["within_near_duplicate_pairs"] == 10.0
    assert r["same_index_cos"] == pytest.approx(1.0) and r["across_near_duplicate_fraction"] == 1.0
    orthogonal = torch.eye(8)[:5].expand(2, 5, 8)
    r = redundancy(orthogonal)
    assert r["within_mean_cos"] == pytest.approx(0.0) and r["within_max_cos"] == pytest.approx(0.0)
    assert r["within_near_duplicate_pairs"] == 0.0
    assert r["same_index_cos"] == pytest.approx(1.0)  # same token index, same vector in both images
    assert r["across_mean_cos"] == pytest.approx(1 / 5)


def test_across_image_metrics_need_two_images() -> None:
    r = redundancy(torch.randn(1, 4, 8))
    assert r["across_mean_cos"] is None and r["same_index_cos"] is None


def test_pooling_covers_every_patch_with_four_patches_per_token() -> None:
    maps = pooling_matrix((8, 8), (4, 4)).float().unsqueeze(0)  # [1, 16, 64], 2x2 windows
    c = coverage(maps)
    assert c["coverage"] == 1.0
    assert c["map_entropy_norm"] == pytest.approx(math.log(4) / math.log(64))
    assert c["effective_patches_per_token"] == pytest.approx(4.0)
    assert c["mass_entropy_norm"] == pytest.approx(1.0)


def test_tokens_that_all_look_at_one_patch_cover_one_patch() -> None:
    maps = torch.zeros(2, 16, 64)
    maps[..., 9] = 1.0
    c = coverage(maps)
    assert c["coverage"] == pytest.approx(1 / 64)
    assert c["map_entropy_norm"] == pytest.approx(0.0) and c["effective_patches_per_token"] == pytest.approx(1.0)


def test_pooling_preserves_grid_order_and_tiles_the_image() -> None:
    maps = pooling_matrix((12, 12), (3, 4)).float().unsqueeze(0)
    s = spatial_fidelity(maps, (12, 12), (3, 4))
    assert s["grid_order_spearman"] == pytest.approx(1.0) and s["cell_occupancy"] == 1.0
    assert s["own_window_share"] == pytest.approx(1.0)  # pooling reads its own window only
    centres = relevance_centres(maps, (12, 12))
    torch.testing.assert_close(centres[0, 0], torch.tensor([2.0, 1.5]))  # rows 0-3, cols 0-2


def test_own_window_share_measures_relevance_drawn_from_neighbouring_cells() -> None:
    from deco.analysis.metrics import own_window_share

    own = pooling_matrix((4, 4), (2, 2)).float()  # [4, 16]: each token its 2x2 window
    blurred = 0.25 * own + 0.75 * torch.full((4, 16), 1 / 16)  # a quarter own window, the rest spread evenly
    # own share = 0.25 + 0.75 * 4/16
    assert own_window_share(blurred.unsqueeze(0), (4, 4), (2, 2)) == pytest.approx(0.25 + 0.75 * 0.25)
    assert own_window_share(own.flip(0).unsqueeze(0), (4, 4), (2, 2)) == pytest.approx(0.0)
    assert own_window_share(torch.zeros(1, 4, 16), (4, 4), (2, 2)) is None


def test_reversed_tokens_give_negative_grid_order() -> None:
    maps = pooling_matrix((12, 12), (3, 3)).float().flip(0).unsqueeze(0)
    assert spatial_fidelity(maps, (12, 12), (3, 3))["grid_order_spearman"] == pytest.approx(-1.0)


def test_learned_queries_on_one_spot_occupy_one_cell() -> None:
    maps = torch.zeros(1, 8, 144)
    maps[..., 0] = 1.0
    s = spatial_fidelity(maps, (12, 12), None)
    assert s["grid_order_spearman"] is None and s["cell_occupancy"] == pytest.approx(1 / 8)
    assert square_factors(8) == (2, 4) and square_factors(36) == (6, 6) and square_factors(7) == (1, 7)


def test_spearman_handles_ties_and_constants() -> None:
    a = torch.tensor([1.0, 2.0, 2.0, 3.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, torch.ones(4)) is None
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
