"""Query-to-Patch: for every projector output token, its relevance over the N input patches.

Three routes, chosen per projector (`route="auto"`) and named in every result:
- exact (`deco` and the video pooling projectors `deco3d`, `deco_temporal`, `deco_spatial`, `pllava`):
  each token is exactly an adaptive average over patches (of the raw features before the MLP, or, for
  PLLaVA, of the per-patch MLP outputs); the map is the pooling matrix itself.
- attention (`qformer`, `qformer_video`, `resampler`, `attnpool`, `dabstractor`, `tokenpacker`): Chefer et al.'s
  gradient-weighted relevance through the projector's captured attention maps (deco.analysis.relevance).
  The explained output of token m is its self-projection <t_m, stopgrad(t_m)>; each batch copy of the
  image explains one token, so one backward pass serves a chunk of tokens.
- gradient (`mlp`, `linear`, `pixel_shuffle`, `cabstractor`, `ldpv2`): no attention maps exist
  (per-patch MLPs, convolutions), so the map is the per-patch L2 norm of d<t_m, stopgrad(t_m)>/d patch,
  a sensitivity map. For pooling-then-MLP this equals the pooling matrix (the tests check it).
Every map is row-normalised (each token's relevance sums to 1 over patches); `raw` keeps the values.
Grids are (h, w) for images or (frames, h, w) for video projectors (patches frame-major).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from deco.analysis.hooks import ProbeRecord, capture_probes, gradients_of, probe_modules
from deco.analysis.relevance import (
    cross_attention_addition,
    head_mean_relevance,
    row_normalise,
    self_attention_rule,
)
from deco.errors import ConfigError, ShapeError
from deco.projectors.base import Grid, Projector
from deco.projectors.deformable import patch_attention as deformable_patch_attention
from deco.projectors.pooling import pooling_matrix

ROUTES = ("exact", "attention", "gradient")
EXACT = frozenset({"deco", "deco3d", "deco_temporal", "deco_spatial", "pllava"})
ATTENTION = frozenset({"qformer", "qformer_video", "resampler", "attnpool", "dabstractor", "tokenpacker"})
GRADIENT = frozenset({"mlp", "linear", "pixel_shuffle", "cabstractor", "ldpv2"})

ROUTE_NOTES = {
    "exact": "exact pooling matrix: each token is an adaptive average over the patches (of raw features, "
             "or of per-patch MLP outputs for PLLaVA)",
    "attention": (
        "gradient-weighted attention relevance (Chefer et al. 2021) through the projector's attention "
        "maps; paths around attention (e.g. D-Abstractor's pooled query positions, TokenPacker's "
        "downsampled point queries) are not counted"
    ),
    "gradient": (
        "input-gradient sensitivity (per-patch L2 norm of the gradient of the token's self-projection): "
        "this projector has no attention maps (MLP/convolution), so this is not attention relevance"
    ),
}


@dataclass
class QueryPatchMap:
    """Query-to-Patch maps for I images: `maps` [I, M, N] rows sum to 1 (or 0 where nothing is relevant)."""

    maps: torch.Tensor
    raw: torch.Tensor
    route: str
    projector: str
    grid: tuple[int, ...]  # input patch grid (h, w), or (frames, h, w) for video projectors
    out_grid: Grid | None  # the tokens' own grid, None for learned queries

    @property
    def note(self) -> str:
        """What the route means, for outputs and figure captions."""
        return ROUTE_NOTES[self.route]

    @property
    def zero_rows(self) -> int:
        """Tokens whose relevance is zero everywhere (no positive gradient x attention)."""
        return int((self.raw.sum(-1) == 0).sum())


def exact_matrix(projector: Projector, grid: tuple[int, ...]) -> torch.Tensor:
    """The [M, N] pooling matrix of a pooling projector (2D, or 3D for the video ones)."""
    if hasattr(projector, "target"):  # video pooling projectors: (frames, h, w) -> target (t, h', w')
        from deco.projectors.video import time_grid, video_pooling_matrix

        g3 = time_grid(grid, projector.name)
        return video_pooling_matrix(g3, projector.target(g3))
    return pooling_matrix(grid, projector.out_grid)


def output_grid(projector: Projector, grid: tuple[int, ...]) -> Grid | None:
    """The (oh, ow) grid the output tokens are laid on, or None (learned queries, several frames)."""
    m = projector.num_tokens(grid)
    out: Grid | None = None
    if len(grid) == 3 and grid[0] != 1:
        return None  # video: tokens are (t, h, w), not one spatial grid
    if len(grid) == 3:
        grid = grid[1:]
    if hasattr(projector, "target"):
        t, oh, ow = projector.target((1, *grid))
        out = (oh, ow) if t == 1 else None
    elif hasattr(projector, "out_grid"):
        out = tuple(projector.out_grid)  # type: ignore[assignment]
    elif projector.name in ("mlp", "linear"):
        out = grid
    elif hasattr(projector, "scale"):  # pixel_shuffle (ceil with padding), tokenpacker (exact)
        s = projector.scale
        out = (-(-grid[0] // s), -(-grid[1] // s))
    return out if out is not None and out[0] * out[1] == m else None


def default_route(projector: Projector) -> str:
    """The route `auto` picks: by registry name, else attention if the module has probes."""
    name = projector.name
    if name in EXACT:
        return "exact"
    if name in ATTENTION:
        return "attention"
    if name in GRADIENT:
        return "gradient"
    return "attention" if probe_modules(projector) else "gradient"


def resolve_route(projector: Projector, route: str) -> str:
    """Check that the requested route exists for this projector; `auto` picks the default."""
    if route == "auto":
        return default_route(projector)
    if route not in ROUTES:
        raise ConfigError(f"unknown Query-to-Patch route '{route}'; valid: auto, {', '.join(ROUTES)}")
    name = projector.name or type(projector).__name__
    if route == "exact" and name not in EXACT:
        raise ConfigError(
            f"projector '{name}' has no exact Query-to-Patch map: only projectors whose tokens are adaptive "
            f"averages over patches ({', '.join(sorted(EXACT))}) have one; use route 'auto' "
            f"({default_route(projector)})"
        )
    if route == "attention" and not probe_modules(projector):
        raise ConfigError(
            f"projector '{name}' ({type(projector).__name__}) has no AttentionProbe modules, so it has no "
            f"attention maps to explain; its Query-to-Patch map comes from route '{default_route(projector)}'"
        )
    return route


def check_chunk_size(chunk_size: int) -> None:
    """Tokens explained per backward pass must be a positive int."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int (tokens per backward pass), got {chunk_size!r}")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Dropout off while explaining; the module's training flags are restored afterwards."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.train(flag)


def query_to_patch(
    projector: Projector,
    features: torch.Tensor,
    grid: tuple[int, ...],
    route: str = "auto",
    chunk_size: int = 16,
    multi_level: torch.Tensor | None = None,
) -> QueryPatchMap:
    """Maps for each image of `features` [I, N, Dv] on `grid`; see the module docstring for routes.

    `multi_level` [I, N, levels*Dv]: the extra layers a multi-level projector (TokenPacker) reads, as
    the model gives them (`DecoModel.vision_features`); the gradient route then counts a patch's
    gradient through all of its layers.
    """
    n = math.prod(grid)
    if features.dim() != 3 or features.shape[1] != n:
        raise ShapeError(f"features must be [I, N={n}, Dv] for grid {tuple(grid)}, got {tuple(features.shape)}")
    if multi_level is not None and multi_level.shape[:2] != features.shape[:2]:
        raise ShapeError(f"multi_level must be [I, N, levels*Dv] with I, N of features {tuple(features.shape)}, "
                         f"got {tuple(multi_level.shape)}")
    route = resolve_route(projector, route)
    check_chunk_size(chunk_size)
    m = projector.num_tokens(grid)
    dtype = next(projector.parameters(), features).dtype
    features = features.detach().to(dtype)
    levels = [None] * len(features) if multi_level is None else multi_level.detach().to(dtype)
    if route == "exact":
        pool = exact_matrix(projector, grid).float().to(features.device)  # [M, N]
        raw = pool.expand(features.shape[0], -1, -1).clone()
    else:
        explain = _attention_rows if route == "attention" else _gradient_rows
        with eval_mode(projector), torch.enable_grad():
            raw = torch.stack([
                torch.cat([explain(projector, image, grid, list(range(s, min(s + chunk_size, m))), level)
                           for s in range(0, m, chunk_size)])
                for image, level in zip(features, levels, strict=True)
            ])  # [I, M, N]
    return QueryPatchMap(row_normalise(raw), raw, route, projector.name, grid, output_grid(projector, grid))


def _self_projection(out: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Sum over batch copies k of <t, stopgrad(t)> for token tokens[k] of copy k (its explained output)."""
    index = torch.tensor(tokens, device=out.device)
    picked = out[torch.arange(len(tokens), device=out.device), index]  # [c, Dl]
    return (picked.float() * picked.detach().float()).sum()


def _copies(image: torch.Tensor, count: int) -> torch.Tensor:
    return image.unsqueeze(0).expand(count, -1, -1).clone().requires_grad_(True)  # [c, N, Dv]


def _run(projector: Projector, x: torch.Tensor, grid: Grid, levels: torch.Tensor | None) -> torch.Tensor:
    """The projector on batch copies x [c, N, Dv] (plus their multi-level features [c, N, L*Dv])."""
    return projector(x, grid) if levels is None else projector(x, grid, multi_level=levels)  # [c, M, Dl]


def _gradient_rows(
    projector: Projector, image: torch.Tensor, grid: Grid, tokens: list[int], level: torch.Tensor | None = None
) -> torch.Tensor:
    """[c, N]: per-patch gradient norms of each token's self-projection (over every layer it reads)."""
    x = _copies(image, len(tokens))
    inputs = [x] if level is None else [x, _copies(level, len(tokens))]
    out = _run(projector, x, grid, None if level is None else inputs[1])  # [c, M, Dl]
    grads = torch.autograd.grad(_self_projection(out, tokens), inputs)
    return torch.cat([g.float() for g in grads], dim=-1).norm(dim=-1)  # [c, N]


def _attention_rows(
    projector: Projector, image: torch.Tensor, grid: Grid, tokens: list[int], level: torch.Tensor | None = None
) -> torch.Tensor:
    """[c, N]: row tokens[k] of R_qi for batch copy k, by the self and cross rules in forward order."""
    c, n, m = len(tokens), image.shape[0], projector.num_tokens(grid)
    x = _copies(image, c)
    with capture_probes(projector) as capture:
        out = _run(projector, x, grid, None if level is None else level.unsqueeze(0).expand(c, -1, -1))
    name = projector.name or type(projector).__name__
    if not capture.records:
        raise ConfigError(
            f"projector '{name}' ran without passing any attention map through its AttentionProbe modules, "
            "so its attention cannot be captured (is the attention computed by a fused kernel?)"
        )
    grads = gradients_of(_self_projection(out, tokens), capture.records)
    dev = image.device
    r_qq = torch.eye(m, device=dev).expand(c, m, m).clone()  # [c, M, M] queries explain themselves
    r_qi = torch.zeros(c, m, n, device=dev)  # [c, M, N] no patch relevance before any cross-attention
    for record, grad in zip(capture.records, grads, strict=True):
        cam_self, cam_cross = _layer_relevance(record, grad, projector, grid, n, m)
        add_qi = cross_attention_addition(r_qq, cam_cross) if cam_cross is not None else 0.0
        if cam_self is not None:
            r_qq, r_qi = self_attention_rule(r_qq, r_qi, cam_self)
        r_qi = r_qi + add_qi
    return r_qi[torch.arange(c, device=dev), torch.tensor(tokens, device=dev)]  # [c, N]


def _layer_relevance(
    record: ProbeRecord, grad: torch.Tensor, projector: Projector, grid: Grid, n: int, m: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(Abar among queries [c, M, M] or None, Abar queries -> patches [c, M, N] or None) for one map."""
    probs, grad = record.probs.detach(), grad.detach()  # relevance is read off, never differentiated
    q, k = probs.shape[-2], probs.shape[-1]
    where = f"attention map '{record.name}' ({type(record.owner).__name__}, shape {list(probs.shape)})"
    if q != m:
        raise ConfigError(f"{where} has {q} query rows but the projector outputs {m} tokens; cannot explain it")
    if record.kind == "self":
        if k != m:
            raise ConfigError(f"{where} is a self-attention map over {k} tokens, not the {m} output tokens")
        return head_mean_relevance(probs, grad), None
    if record.locations is not None:  # deformable: weights over sampled points -> patches, bilinearly
        if getattr(record.owner, "levels", 1) != 1:
            raise ConfigError(f"{where} samples {record.owner.levels} feature levels; only the patch grid is supported")
        point_cam = (grad.float() * probs.float()).clamp(min=0)  # [c, heads, M, P] per sampled point
        patches = deformable_patch_attention(point_cam, record.locations.detach().float(), [grid])
        return None, patches.mean(dim=1)
    if hasattr(record.owner, "patch_attention") and hasattr(record.owner, "region_index"):
        region_cam = (grad.float() * probs.float()).clamp(min=0)  # [c, heads, M, s*s] (TokenPacker)
        return None, record.owner.patch_attention(region_cam, grid).mean(dim=1)
    cam = head_mean_relevance(probs, grad)  # [c, M, K]
    if k == n:
        return None, cam
    if k == n + m:  # Perceiver resampler: keys are [patches ; latents]
        return cam[..., n:], cam[..., :n]
    raise ConfigError(
        f"{where} is a cross-attention map over {k} keys, which is neither the {n} patches nor "
        f"[{n} patches ; {m} queries]; its layout is unknown, so its relevance cannot be mapped to patches"
    )
