"""Measures of what the visual tokens keep: redundancy, coverage and spatial fidelity.

The DeCo article argues that Q-Former queries are sparse (they cover few concepts) and redundant
(near-duplicate tokens, also across images). These functions put numbers on that for any projector:
- redundancy, on the projector outputs [I, M, D]: pairwise cosine similarity of tokens within an
  image (mean, max, near-duplicate pairs above `duplicate_cos`), across images, and between the same
  token index in different images (a learned query that ignores the image scores near 1);
- coverage, on Query-to-Patch maps [I, M, N]: the fraction of patches whose share of the total
  relevance mass is at least `threshold` times the uniform share 1/N, and the entropy of the maps;
- spatial fidelity: relevance centres of the tokens (relevance-weighted mean patch position).
  For tokens laid on a grid (pooling, convolutional, deformable and region projectors, and per-patch
  MLPs) the Spearman correlation between centre rows/columns and the token's own grid row/column
  (1 = the grid order is preserved). Learned queries have no grid position, so for every projector we
  also report cell occupancy: the fraction of cells of an M-cell grid (the token grid, or the most
  square factorisation of M) that contain at least one centre (1 = the tokens tile the image). For
  grid tokens, own-window share: the fraction of a token's relevance that falls on the patches its
  grid cell pools (the window adaptive average pooling would average; 1 for DeCo by construction);
  what is left is drawn from neighbouring cells, a blur of which cell a feature belongs to.
All results are plain floats (None where undefined), ready for JSON.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deco.errors import ShapeError
from deco.projectors.base import Grid


def redundancy(tokens: torch.Tensor, duplicate_cos: float = 0.95) -> dict[str, float | None]:
    """Cosine-similarity redundancy of output tokens [I, M, D] within and across images."""
    if tokens.dim() != 3:
        raise ShapeError(f"tokens must be [I, M, D], got {tuple(tokens.shape)}")
    unit = F.normalize(tokens.detach().float(), dim=-1)  # [I, M, D]
    i, m, _ = unit.shape
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=unit.device), diagonal=1)
    within = (unit @ unit.transpose(1, 2))[:, upper]  # [I, M(M-1)/2]
    out: dict[str, float | None] = {
        "within_mean_cos": float(within.mean()) if within.numel() else None,
        "within_max_cos": float(within.max()) if within.numel() else None,
        "within_near_duplicate_pairs": float((within >= duplicate_cos).sum(-1).float().mean()),
        "within_near_duplicate_fraction": float((within >= duplicate_cos).float().mean()) if within.numel() else None,
        "across_mean_cos": None,
        "across_max_cos": None,
        "across_near_duplicate_fraction": None,
        "same_index_cos": None,
    }
    if i > 1:
        sums = {"mean": 0.0, "dup": 0.0, "same": 0.0}
        best = -1.0
        pairs = 0
        for a in range(i - 1):
            sims = unit[a] @ unit[a + 1 :].transpose(1, 2)  # [I-a-1, M, M]
            sums["mean"] += float(sims.mean(dim=(1, 2)).sum())
            sums["dup"] += float((sims >= duplicate_cos).float().mean(dim=(1, 2)).sum())
            sums["same"] += float(sims.diagonal(dim1=1, dim2=2).mean(-1).sum())
            best = max(best, float(sims.max()))
            pairs += sims.shape[0]
        out.update(
            across_mean_cos=sums["mean"] / pairs,
            across_max_cos=best,
            across_near_duplicate_fraction=sums["dup"] / pairs,
            same_index_cos=sums["same"] / pairs,
        )
    return out


def coverage(q2p: torch.Tensor, threshold: float = 0.5) -> dict[str, float | None]:
    """Patch coverage and map entropy of row-normalised Query-to-Patch maps [I, M, N]."""
    if q2p.dim() != 3:
        raise ShapeError(f"Query-to-Patch maps must be [I, M, N], got {tuple(q2p.shape)}")
    maps = q2p.detach().float()
    n = maps.shape[-1]
    mass = maps.sum(1)  # [I, N] relevance each patch receives from all tokens
    share = mass / mass.sum(-1, keepdim=True).clamp_min(1e-30)
    covered = (share >= threshold / n).float().mean(-1)  # [I]
    rows = maps.reshape(-1, n)
    rows = rows[rows.sum(-1) > 0]
    entropy = -(rows * rows.clamp_min(1e-30).log()).sum(-1)  # [rows] nats
    mass_entropy = -(share * share.clamp_min(1e-30).log()).sum(-1)  # [I]
    log_n = math.log(n) if n > 1 else 1.0
    return {
        "coverage": float(covered.mean()),
        "map_entropy": float(entropy.mean()) if rows.numel() else None,
        "map_entropy_norm": float(entropy.mean()) / log_n if rows.numel() else None,
        "effective_patches_per_token": float(entropy.exp().mean()) if rows.numel() else None,
        "mass_entropy_norm": float(mass_entropy.mean()) / log_n,
    }


def relevance_centres(q2p: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Relevance-weighted mean (row, col) of each token's map, in patch units: [I, M, 2]; NaN for empty rows."""
    h, w = grid
    if q2p.shape[-1] != h * w:
        raise ShapeError(f"maps have {q2p.shape[-1]} patches but the grid {h}x{w} has {h * w}")
    rows = torch.arange(h, dtype=torch.float32).repeat_interleave(w) + 0.5  # [N] patch centres
    cols = torch.arange(w, dtype=torch.float32).repeat(h) + 0.5
    maps = q2p.detach().float().cpu()
    total = maps.sum(-1)  # [I, M]
    centre = torch.stack([maps @ rows, maps @ cols], -1) / total.unsqueeze(-1)
    centre[total == 0] = float("nan")
    return centre


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged (for Spearman's rho)."""
    order = x.argsort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    for value in x.unique():
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two 1D tensors; None when either is constant or too short."""
    keep = ~(a.isnan() | b.isnan())
    a, b = a[keep].double(), b[keep].double()
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = ra.norm() * rb.norm()
    return float((ra @ rb) / denom) if denom > 0 else None


def square_factors(m: int) -> Grid:
    """The most square (rows, cols) with rows * cols = m."""
    rows = max(d for d in range(1, int(math.isqrt(m)) + 1) if m % d == 0)
    return (rows, m // rows)


def spatial_fidelity(q2p: torch.Tensor, grid: Grid, out_grid: Grid | None) -> dict[str, float | None]:
    """Grid-order Spearman (tokens with a grid position only) and cell occupancy (every projector)."""
    centres = relevance_centres(q2p, grid)  # [I, M, 2]
    m = centres.shape[1]
    cells = out_grid if out_grid is not None else square_factors(m)
    if cells[0] * cells[1] != m:
        raise ShapeError(f"token grid {cells[0]}x{cells[1]} does not hold the {m} tokens")
    occupancy = []
    rho = []
    own_rows = torch.arange(m) // cells[1]
    own_cols = torch.arange(m) % cells[1]
    for image in centres:
        valid = ~image.isnan().any(-1)
        cy = (image[valid, 0] / grid[0] * cells[0]).floor().clamp(0, cells[0] - 1).long()
        cx = (image[valid, 1] / grid[1] * cells[1]).floor().clamp(0, cells[1] - 1).long()
        occupancy.append(len(set((cy * cells[1] + cx).tolist())) / m)
        if out_grid is not None:
            per_axis = [spearman(image[:, 0], own_rows.float()), spearman(image[:, 1], own_cols.float())]
            per_axis = [r for r in per_axis if r is not None]
            if per_axis:
                rho.append(sum(per_axis) / len(per_axis))
    return {
        "grid_order_spearman": sum(rho) / len(rho) if rho else None,
        "cell_occupancy": sum(occupancy) / len(occupancy),
        "own_window_share": own_window_share(q2p, grid, out_grid) if out_grid is not None else None,
    }


def own_window_share(q2p: torch.Tensor, grid: Grid, out_grid: Grid) -> float | None:
    """Mean fraction of each grid token's relevance [I, M, N] on the patches of its own pooling window."""
    from deco.projectors.pooling import pooling_matrix

    if q2p.shape[1] != out_grid[0] * out_grid[1] or q2p.shape[2] != grid[0] * grid[1]:
        raise ShapeError(f"Query-to-Patch maps {tuple(q2p.shape)} do not match grid {grid} -> {out_grid}")
    window = (pooling_matrix(grid, out_grid) > 0).to(q2p.dtype)  # [M, N]
    mass = q2p.clamp(min=0).sum(-1)  # [I, M]
    own = (q2p.clamp(min=0) * window).sum(-1)
    valid = mass > 0
    return float((own[valid] / mass[valid]).mean()) if valid.any() else None
