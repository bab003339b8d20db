"""Records: JSON/JSONL loading, and every bad input named by file, line/column or sample id."""

from __future__ import annotations

import json

import pytest

from deco.data import find_missing_images, load_records, records_from_dicts
from deco.errors import DataError


def rec(i="s1", image="a.png", turns=None):
    out = {
        "id": i,
        "conversations": turns
        or [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A cat."}],
    }
    if image is not None:
        out["image"] = image
    return out


def text_rec(i="t1"):
    return rec(i, image=None, turns=[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}])


def write_json(tmp_path, items, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def write_jsonl(tmp_path, items, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(x) for x in items) + "\n", encoding="utf-8")
    return path


def test_json_list_and_jsonl_load_the_same_records(tmp_path):
    items = [rec("a"), text_rec("b"), rec(7)]
    from_json = load_records(write_json(tmp_path, items))
    from_jsonl = load_records(write_jsonl(tmp_path, items))
    assert [r.id for r in from_json] == ["a", "b", "7"] == [r.id for r in from_jsonl]
    assert from_json[0].turns == (("human", "<image>\nWhat?"), ("gpt", "A cat.")) == from_jsonl[0].turns
    assert from_json[0].images == ("a.png",) and from_json[1].images == ()
    assert from_jsonl[2].source.endswith("data.jsonl:3")


def test_json_list_records_know_their_line(tmp_path):
    path = write_json(tmp_path, [text_rec("a"), text_rec("b")])
    lines = path.read_text().splitlines()
    second = next(i for i, line in enumerate(lines, 1) if '"b"' in line) - 1  # the '{' line before "id"
    records = load_records(path)
    assert records[1].source == f"{path}:{second}:3"


def test_user_assistant_aliases_and_missing_id(tmp_path):
    item = {"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Yo"}]}
    (r,) = load_records(write_json(tmp_path, [item]))
    assert r.turns == (("human", "Hi"), ("gpt", "Yo")) and r.id == "data.json#0"


def test_bom_and_jsonl_content_in_a_json_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(text_rec("x")) + "\n").encode())
    assert [r.id for r in load_records(path)] == ["x"]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('[\n  {"id": "a", "conversations": []}\n  {"id": "b"}\n]', ":3:3:", "expected ',' or ']'"),
        ('[\n  {"id": "a",\n   "conversations": [}\n]', ":3:22:", "malformed JSON"),
        (
            '[\n  {"id": "a", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]},\n]',
            ":3:1:",
            "trailing comma",
        ),
        ('[\n  {"id": "a"', ":2:13:", "malformed JSON"),
        ("[1] [2]", ":1:5:", "extra data"),
    ],
)
def test_malformed_json_names_line_and_column(tmp_path, text, where, what):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=what) as err:
        load_records(path)
    assert f"{path}{where}" in str(err.value)


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(text_rec("a")) + "\n\n" + '{"id": "b", "conversations": [}\n')
    with pytest.raises(DataError, match=rf"{path}:3:\d+: malformed JSON"):
        load_records(path)


def test_non_utf8_names_byte_offset_and_line(tmp_path):
    good = json.dumps([text_rec("a")]).encode()
    path = tmp_path / "latin.json"
    path.write_bytes(b"\n" + good[:20] + b"\xff" + good[20:])
    with pytest.raises(DataError, match=rf"{path}: not valid UTF-8 at byte offset 21 \(line 2\)"):
        load_records(path)


@pytest.mark.parametrize("content", ["", "  \n ", "[]", "[\n]\n", "\n\n"])
def test_empty_dataset(tmp_path, content):
    path = tmp_path / ("e.jsonl" if content == "\n\n" else "e.json")
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{path}: empty dataset"):
        load_records(path)


def test_one_object_instead_of_a_list(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(text_rec("a"), indent=2))
    with pytest.raises(DataError, match=rf"{path}: expected a JSON list of records, got one JSON object"):
        load_records(path)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nope.json"):
        load_records(tmp_path / "nope.json")


def _load_one(tmp_path, item, **kw):
    return load_records(write_jsonl(tmp_path, [text_rec("ok"), item]), **kw)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "m1", "image": "a.png"}, "sample 'm1': missing 'conversations'"),
        ({"id": "m2", "conversations": []}, "sample 'm2': 'conversations' must be a non-empty list"),
        (
            rec("r1", turns=[{"from": "human", "value": "<image>x"}, {"from": "bot", "value": "y"}]),
            "sample 'r1': conversations\\[1\\] has unknown role 'bot'; valid: human, gpt",
        ),
        (
            rec("r2", turns=[{"from": "human", "value": "<image>x"}, {"from": "human", "value": "y"}]),
            "sample 'r2': roles do not alternate: conversations\\[1\\]",
        ),
        (
            rec("r3", turns=[{"from": "gpt", "value": "<image>x"}, {"from": "human", "value": "y"}]),
            "sample 'r3': roles do not alternate: conversations\\[0\\]",
        ),
        (
            rec(
                "r4",
                turns=[
                    {"from": "human", "value": "<image>x"},
                    {"from": "gpt", "value": "y"},
                    {"from": "human", "value": "z"},
                ],
            ),
            "sample 'r4': conversation ends with a human turn",
        ),
        (
            rec("i1", turns=[{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]),
            "sample 'i1': has image 'a.png' but no <image> marker",
        ),
        (rec("i2", image=None), "sample 'i2': has 1 <image> marker\\(s\\) but no 'image' field"),
        (
            rec("i3", turns=[{"from": "human", "value": "<image><image>x"}, {"from": "gpt", "value": "y"}]),
            "sample 'i3': has 2 <image> markers; one per sample is allowed unless allow_multi_image",
        ),
        (
            rec(
                "i4",
                image=["a.png", "b.png"],
                turns=[{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "y"}],
            ),
            "sample 'i4': 'image' lists 2 images; set allow_multi_image",
        ),
        (
            rec("i5", turns=[{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "<image>"}]),
            "sample 'i5': <image> appears in a gpt turn",
        ),
        (
            rec("v1", turns=[{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": 5}]),
            "sample 'v1': conversations\\[1\\].value must be a string, got int",
        ),
        (
            rec("v2", turns=[{"from": "human", "value": "<image>x"}, {"from": 3, "value": "y"}]),
            "sample 'v2': conversations\\[1\\].from must be a string",
        ),
        (rec("v3", image=7), "sample 'v3': 'image' must be a non-empty string path"),
        (rec(["x"]), "'id' must be a string or integer, got list"),
        (["not", "an", "object"], "a record must be a JSON object, got list"),
    ],
)
def test_bad_records_name_file_line_and_sample(tmp_path, item, message):
    with pytest.raises(DataError, match=message) as err:
        _load_one(tmp_path, item)
    assert f"{tmp_path / 'data.jsonl'}:2: " in str(err.value)


def test_multi_image_when_configured(tmp_path):
    turns = [{"from": "human", "value": "<image> vs <image>?"}, {"from": "gpt", "value": "Same."}]
    (_, r) = _load_one(tmp_path, rec("mm", image=["a.png", "b.png"], turns=turns), allow_multi_image=True)
    assert r.images == ("a.png", "b.png")
    with pytest.raises(DataError, match="sample 'mm3': has 2 <image> marker\\(s\\) but 3 image path"):
        _load_one(tmp_path, rec("mm3", image=["a", "b", "c"], turns=turns), allow_multi_image=True)


def test_null_image_is_no_image_and_single_list_is_accepted(tmp_path):
    item = text_rec("n")
    item["image"] = None
    assert _load_one(tmp_path, item)[1].images == ()
    assert _load_one(tmp_path, rec("one", image=["a.png"]))[1].images == ("a.png",)


def test_records_from_dicts_and_missing_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    records = records_from_dicts([rec("has", "a.png"), rec("lacks", "sub/b.png"), text_rec()], source="mem")
    missing = find_missing_images(records, tmp_path)
    assert [(r.id, p) for r, p in missing] == [("lacks", tmp_path / "sub" / "b.png")]
    with pytest.raises(DataError, match="mem\\[1\\]: sample 'x': missing 'conversations'"):
        records_from_dicts([text_rec(), {"id": "x"}], source="mem")
    with pytest.raises(DataError, match="mem: empty dataset"):
        records_from_dicts([], source="mem")
