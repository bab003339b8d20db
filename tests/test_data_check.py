"""`deco data check`: every record validated, every image decoded in parallel, each bad sample reported
with file, line, id and reason."""

from __future__ import annotations

import json

from PIL import Image

from deco.data.check import check_data
from trust_helpers import run_deco


def _dataset(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    records = []

    def add(name, **extra):
        records.append({"id": name, "image": f"{name}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "a shape"}], **extra})

    for i in range(6):
        Image.new("RGB", (16 + i, 16), (i * 40, 0, 0)).save(images / f"good{i}.png")
        add(f"good{i}")
    Image.new("RGB", (64, 64), (0, 200, 0)).save(images / "truncated.png")
    raw = (images / "truncated.png").read_bytes()
    (images / "truncated.png").write_bytes(raw[: len(raw) // 2])
    add("truncated")
    (images / "empty.png").write_bytes(b"")
    add("empty")
    (images / "text.png").write_text("not an image at all")
    add("text")
    Image.new("1", (10_000, 9_000)).save(images / "bomb.png")  # 90M pixels: above the decompression-bomb guard
    add("bomb")
    add("missing")
    records.append({"id": "no-turns", "image": "good0.png"})
    (tmp_path / "outside.png").write_bytes((images / "good0.png").read_bytes())
    records.append({**records[0], "id": "escapes", "image": "../outside.png"})
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")  # one record per line
    return path, images


def test_data_check_reports_every_bad_sample(tmp_path, capsys, monkeypatch):
    data, images = _dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_deco(["data", "check", data, "--images", images, "--workers", "2"], capsys)
    assert code == 1, err
    assert out.splitlines()[0].startswith("13 records: 6 good, 7 bad")
    report = [json.loads(x) for x in (tmp_path / "data.json.check.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in report}
    assert set(by_id) == {"truncated", "empty", "text", "bomb", "missing", "no-turns", "escapes"}
    assert all(r["file"] == str(data) for r in report)
    assert by_id["truncated"]["line"] == 8 and by_id["escapes"]["line"] == 14  # line 1 is '['
    assert by_id["truncated"]["reason"].startswith("unreadable_image: corrupt or truncated image file")
    assert "empty (0 bytes)" in by_id["empty"]["reason"]
    assert "not an image" in by_id["text"]["reason"]
    assert "decompression-bomb" in by_id["bomb"]["reason"]
    assert by_id["missing"]["reason"].startswith("missing_image: image file not found")
    assert by_id["no-turns"]["reason"] == "invalid_record: missing 'conversations'"
    assert by_id["escapes"]["reason"].startswith("outside_image_folder: image path '../outside.png' resolves to")
    assert "report: data.json.check.jsonl (7 bad sample(s))" in out


def test_data_check_passes_clean_data_and_allows_outside_on_request(tmp_path, capsys):
    data, images = _dataset(tmp_path)
    records = [r for r in json.loads(data.read_text()) if r["id"].startswith("good") or r["id"] == "escapes"]
    data.write_text(json.dumps(records))
    report = tmp_path / "r.jsonl"
    code, out, _ = run_deco(["data", "check", data, "--images", images, "--report", report], capsys)
    assert code == 1 and "1 bad" in out
    code, out, _ = run_deco(["data", "check", data, "--images", images, "--report", report, "--workers", "1",
                             "--allow-outside-image-folder"], capsys)
    assert code == 0, out
    assert out.startswith("7 records: 7 good, 0 bad; 7 images decoded, 0 bad")
    assert report.read_text() == ""


def test_parallel_and_serial_checks_agree(tmp_path):
    data, images = _dataset(tmp_path)
    one, two = check_data(data, images, workers=1), check_data(data, images, workers=2)
    assert one.bad == two.bad and len(one.good) == len(two.good) == 6
    assert one.images == 10 and one.bad_images == 4  # 6 good + 4 bad files; missing and outside ones not decoded


def test_unparseable_file_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1,}]')
    code, _, err = run_deco(["data", "check", bad], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {bad}:1:11: malformed JSON: Expecting property name enclosed in "
                                        "double quotes"]
