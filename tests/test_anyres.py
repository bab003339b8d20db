"""AnyRes (LLaVA-NeXT-style high resolution): layout choice, tiles, token layout, model filling, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from deco.config import load_config
from deco.errors import ConfigError, ShapeError
from deco.model import build_model
from deco.model.anyres import AnyRes, select_layout
from deco.model.processor import ImageTransform

TRANSFORM = ImageTransform(48, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), crop=False)


def tiny(projector="deco", options="{grid: 3x3}"):
    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml", [f"projector.name={projector}", f"projector.options={options}"])
    return build_model(cfg).eval()


def test_layout_choice_follows_llava_next():
    layouts = [(1, 2), (2, 1), (2, 2), (1, 3), (3, 1)]
    assert select_layout((1000, 330), layouts, 336) == (1, 3)  # wide
    assert select_layout((330, 1000), layouts, 336) == (3, 1)  # tall
    assert select_layout((700, 690), layouts, 336) == (2, 2)  # big and square
    assert select_layout((672, 336), layouts, 336) == (1, 2)  # fits a 1x2 canvas exactly
    # Small images: every canvas keeps all pixels, so the least wasted canvas wins.
    assert select_layout((100, 60), layouts, 336) == (1, 2)


def test_views_are_the_global_image_then_tiles_row_major():
    image = Image.new("RGB", (96, 48), (255, 0, 0))
    image.paste((0, 0, 255), (48, 0, 96, 48))  # right half blue
    anyres = AnyRes(TRANSFORM, tile_tokens=9, token_grid=(3, 3))
    views, layout = anyres.views(image)
    assert layout == (1, 2) and views.shape == (3, 3, 48, 48)
    assert views[1, 0].mean() > 0.99 and views[1, 2].mean() < 0.01  # left tile red
    assert views[2, 2].mean() > 0.99 and views[2, 0].mean() < 0.01  # right tile blue
    assert 0.3 < views[0, 0].mean() < 0.7  # global view: both halves, squeezed into one tile


def test_token_layout_newline_and_separator():
    newline = AnyRes(TRANSFORM, tile_tokens=4, token_grid=(2, 2))
    block = newline.block((1, 2), image_token_id=7, layout_token_id=10)
    # global 4, then 2 rows of (2 tiles x 2 tokens) each ended by a newline
    assert block == [7] * 4 + ([7] * 4 + [10]) * 2
    assert len(block) == newline.num_tokens((1, 2)) == newline.tokens_for_size((96, 40))
    separator = AnyRes(TRANSFORM, tile_tokens=4, token_grid=None, layout_tokens="separator")
    assert separator.block((2, 1), 7, 10) == [7] * 4 + ([10] + [7] * 4) * 2


def test_arrange_joins_tile_grids_row_by_row():
    anyres = AnyRes(TRANSFORM, tile_tokens=4, token_grid=(2, 2))
    # views: global, tile (0,0), tile (0,1); token value = 10*view + index within its 2x2 grid
    tokens = torch.tensor([[10.0 * v + i for i in range(4)] for v in range(3)]).unsqueeze(-1)
    out = anyres.arrange(tokens, (1, 2)).squeeze(-1).tolist()
    assert out == [0, 1, 2, 3, 10, 11, 20, 21, 12, 13, 22, 23]


def test_model_fills_each_image_block_and_leaves_newlines_as_text():
    model = tiny()
    anyres = model.enable_anyres()
    proc = model.processor()
    wide, square = Image.new("RGB", (150, 50), (200, 30, 30)), Image.new("RGB", (100, 100), (10, 200, 10))
    batch = proc("A <image> and B <image>.", images=[wide, square])
    assert batch["image_layouts"] == [(1, 3), (2, 2)]
    assert batch["pixel_values"].shape == (4 + 5, 3, 48, 48)
    ids = batch["input_ids"][0]
    expected_slots = anyres.num_placeholders((1, 3)) + anyres.num_placeholders((2, 2))
    assert int((ids == proc.image_token_id).sum()) == expected_slots == 9 * 9
    # positions an image takes, known before anything runs, match the processor's layout
    n_text = len(proc.tokenizer("A <image> and B <image>.").input_ids) - 2
    assert ids.numel() == n_text + anyres.tokens_for_size(wide.size) + anyres.tokens_for_size(square.size)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"], batch["image_layouts"])
    tokens = model.encode_images(batch["pixel_values"])  # [9 views, 9, Dl]
    slots = embeds[0][ids == proc.image_token_id]
    torch.testing.assert_close(slots[:9], tokens[0])  # wide image's global view first
    torch.testing.assert_close(slots[9:12], tokens[1, :3])  # then the first row of tile (0, 0)
    torch.testing.assert_close(slots[12:15], tokens[2, :3])  # then the first row of tile (0, 1)
    newline = model.llm.get_input_embeddings()(torch.tensor(proc.layout_token_id))
    torch.testing.assert_close(embeds[0][ids == proc.layout_token_id][0], newline)
    assert model(**batch).logits.shape[1] == ids.numel()
    assert model.generate(**batch, max_new_tokens=2).shape == (1, 2)


def test_separator_layout_serves_projectors_without_a_token_grid():
    model = tiny("qformer", "{num_queries: 5, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32}")
    with pytest.raises(ConfigError, match="use layout_tokens='separator'"):
        model.enable_anyres()
    anyres = model.enable_anyres(layout_tokens="separator")
    batch = model.processor()("<image>", images=[Image.new("RGB", (50, 100))])
    assert batch["image_layouts"] == [(2, 1)]
    assert batch["input_ids"].shape[1] >= anyres.num_tokens((2, 1)) == 3 * 5 + 2
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def test_limits_and_layout_errors():
    with pytest.raises(ConfigError, match="3x3 has 9 tiles, more than max_tiles=4"):
        AnyRes(TRANSFORM, 9, (3, 3), layouts=[(1, 2), (3, 3)], max_tiles=4)
    with pytest.raises(ConfigError, match="two positive ints"):
        AnyRes(TRANSFORM, 9, (3, 3), layouts=[(0, 2)])
    anyres = AnyRes(TRANSFORM, 9, (3, 3), layouts=["1x2", "2x1"], max_tiles=2)
    with pytest.raises(ShapeError, match=r"photo 3: tile layout 2x2 \(4 tiles, max_tiles=2\) is not among"):
        anyres.views(Image.new("RGB", (96, 96)), layout=(2, 2), where="photo 3")
    with pytest.raises(ShapeError, match="1x3"):
        anyres.num_tokens((1, 3))


def test_model_side_errors():
    model = tiny()
    batch = model.processor()("<image>", images=[Image.new("RGB", (48, 48))])
    with pytest.raises(ConfigError, match="enable_anyres"):
        model.embed(batch["input_ids"], batch["pixel_values"], [(1, 2)])
    model.enable_anyres()
    batch = model.processor()("<image>", images=[Image.new("RGB", (96, 40))])
    with pytest.raises(ShapeError, match=r"need 5 views but pixel_values holds 3"):
        model.embed(batch["input_ids"], batch["pixel_values"], [(2, 2)])
    with pytest.raises(ShapeError, match="3x3.*not among the configured layouts"):
        model.embed(batch["input_ids"], batch["pixel_values"], [(3, 3)])
    with pytest.raises(ConfigError, match="videos"):
        tiny("deco3d", "{target: 2x3x3, num_frames: 4}").enable_anyres()
