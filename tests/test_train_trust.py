"""Runs you can trust (issue 14), through `deco train` as a user meets it: a resume that continues the
recorded run or refuses, data matched by content, clean failures on a bad folder or a full disk, and
bad samples found before step 1 and listed."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from safetensors import SafetensorError

from deco.train.report.metrics import read_metrics
from deco.train.rundir.checkpoint import latest_checkpoint
from deco.train.step.optim import lr_factor, warmup_steps
from trust_helpers import run_deco, train_args

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_resume_refuses_changes_unless_allowed_and_records_them(llava_data, tmp_path, capsys):
    run = tmp_path / "run"
    # --resume with nothing to resume from says so, then starts at step 0.
    code, _, err = run_deco([*train_args(llava_data, run), "--resume"], capsys)
    assert code == 0, err
    assert f"no checkpoint in {run} to resume from" in err

    code, _, err = run_deco(train_args(llava_data, run, "train.lr=0.01", "train.seed=7", "train.lr_schedule=linear",
                                       steps=6) + ["--resume"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: cannot resume from") and "4 setting(s) differ" in lines[0]
    for key, old, new in (("train.lr", "0.001", "0.01"), ("train.max_steps", "4", "6"), ("train.seed", "42", "7"),
                          ("train.lr_schedule", "cosine", "linear")):
        assert f"  {key}: {old} -> {new}" in lines
    assert "train.seed cannot change within a run" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.001  # nothing rewritten

    code, _, err = run_deco([*train_args(llava_data, run), "--resume", "--allow-change", "train.seed"], capsys)
    assert code == 2 and "only these settings may change part-way" in err

    code, _, err = run_deco(train_args(llava_data, run, "train.lr=0.01", steps=6)
                            + ["--resume", "--allow-change", "train.lr,train.max_steps"], capsys)
    assert code == 0, err
    assert "changed from step 4 on (--allow-change): train.lr: 0.001 -> 0.01" in err
    records = read_metrics(run / "metrics.jsonl")
    event = next(r for r in records if r.get("event") == "config_change")
    assert event["step"] == 4
    assert event["changes"] == {"train.lr": {"old": 0.001, "new": 0.01}, "train.max_steps": {"old": 4, "new": 6}}
    steps = {r["step"]: r for r in records if "loss" in r}
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    # Step 5 (0-based 4) ran at the new base lr on the new 6-step schedule.
    assert steps[5]["lr"] == pytest.approx(0.01 * lr_factor(4, 6, warmup_steps(6, 0.03), "cosine"))
    assert steps[4]["lr"] == pytest.approx(0.001 * lr_factor(3, 4, warmup_steps(4, 0.03), "cosine"))
    history = [json.loads(x) for x in (run / "config_history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[0]["config"]["train"]["lr"] == 0.001 and history[1]["changes"]["train.lr"]["new"] == 0.01
    assert json.loads((run / "checkpoint-6" / "train_state.json").read_text())["config"]["train"]["lr"] == 0.01


def test_data_is_matched_by_content_not_path(llava_data, tmp_path, capsys):
    train_file, images = llava_data
    run = tmp_path / "run"
    assert run_deco(train_args(llava_data, run), capsys)[0] == 0

    moved = tmp_path / "moved"
    shutil.copytree(train_file.parent, moved)  # copy2 keeps modification times: the same data elsewhere
    code, _, err = run_deco([*train_args((moved / "train.json", moved / "images"), run), "--resume"], capsys)
    assert code == 0, err
    assert "resuming at step 4" in err

    records = json.loads((moved / "train.json").read_text())
    records[0]["conversations"][1]["value"] = "a rewritten answer"
    (moved / "train.json").write_text(json.dumps(records))
    code, _, err = run_deco([*train_args((moved / "train.json", moved / "images"), run), "--resume"], capsys)
    assert code == 2
    assert "  data: data file content changed" in err and "--allow-change data" in err

    (moved / "train.json").write_text(train_file.read_text())
    Image.new("RGB", (9, 9), (1, 2, 3)).save(moved / "images" / "img3.png")
    code, _, err = run_deco([*train_args((moved / "train.json", moved / "images"), run), "--resume"], capsys)
    assert code == 2
    assert "images changed: 1 modified (size or time): img3.png" in err


def test_unwritable_output_dir_fails_before_building_anything(llava_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_deco(train_args(llava_data, blocker / "run"), capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: train.output_dir '{blocker / 'run'}' cannot be created: Not a directory"]


def test_not_enough_disk_space_is_refused_before_step_1(llava_data, tmp_path, capsys, monkeypatch):
    import deco.train.rundir.preflight as preflight

    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code, _, err = run_deco(train_args(llava_data, tmp_path / "run"), capsys)
    assert code == 2
    assert "error: not enough disk space: 1000 B free" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# What a disk failing part-way raises: safetensors wraps a full disk in its own error (the probe of issue 26
# met it as a raw traceback); a plain OSError from permissions taken away.
_DISK_FAILURES = {
    "full": (lambda path: SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                          'message: "No space left on device" })'),
             "No space left on device; free space on that disk"),
    "permission": (lambda path: PermissionError(errno.EACCES, "Permission denied", path),
                   "Permission denied; make the folder writable by this user again"),
}


@pytest.mark.parametrize("failure", sorted(_DISK_FAILURES))
def test_a_disk_failing_mid_run_is_one_line_naming_the_last_checkpoint(llava_data, tmp_path, capsys, monkeypatch,
                                                                       failure):
    import deco.train.rundir.checkpoint as checkpoint

    real, (make_error, says) = checkpoint.save_file, _DISK_FAILURES[failure]

    def fail_at_step_4(tensors, path):
        if "checkpoint-4" in path:
            raise make_error(path)
        real(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", fail_at_step_4)
    run = tmp_path / "run"
    code, _, err = run_deco(train_args(llava_data, run), capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [err.strip().splitlines()[-1]] and "Traceback" not in err  # one line, the last
    assert errors[0].startswith(f"error: training stopped: {run}/.tmp-checkpoint-4-")
    assert says in errors[0]
    assert errors[0].endswith(f"the last good checkpoint is {run / 'checkpoint-2'}; once fixed, continue with --resume")
    assert latest_checkpoint(run) == run / "checkpoint-2" and not list(run.glob(".tmp-*"))
    monkeypatch.setattr(checkpoint, "save_file", real)
    code, _, err = run_deco([*train_args(llava_data, run), "--resume"], capsys)
    assert code == 0, err
    assert "resuming at step 2" in err


def _break_image(images: Path, name: str) -> None:
    data = (images / name).read_bytes()
    (images / name).write_bytes(data[: len(data) // 2])  # truncated: the header reads, decoding fails


def test_check_images_decode_finds_corrupt_files_before_step_1(llava_data, tmp_path, capsys):
    train_file, images = llava_data
    _break_image(images, "img5.png")
    code, _, err = run_deco(train_args(llava_data, tmp_path / "a", "data.check_images=decode"), capsys)
    assert code == 2
    assert "sample 'img-5'" in err and "img5.png" in err and "corrupt or truncated" in err
    assert not (tmp_path / "a" / "metrics.jsonl").exists()  # not one step ran

    run = tmp_path / "b"
    code, _, err = run_deco(train_args(llava_data, run, "data.check_images=decode", "data.on_bad_sample=skip"), capsys)
    assert code == 0, err
    assert "11 samples (1 skipped, listed in skipped_samples.jsonl)" in err
    (listed,) = [json.loads(x) for x in (run / "skipped_samples.jsonl").read_text().splitlines()]
    assert listed["id"] == "img-5" and listed["reason"] == "unreadable_image"
    assert listed["source"].startswith(f"{train_file}:")


def test_images_outside_the_image_folder_are_refused(llava_data, tmp_path, capsys):
    train_file, images = llava_data
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (images / "link.png").symlink_to(outside)  # inside by name, outside once resolved
    records = json.loads(train_file.read_text())
    records[0]["image"], records[1]["image"] = "../../secret.png", "link.png"
    train_file.write_text(json.dumps(records))
    code, _, err = run_deco(train_args(llava_data, tmp_path / "a"), capsys)
    assert code == 2
    assert f"resolves to {outside.resolve()}, outside data.image_folder" in err

    run = tmp_path / "b"
    code, _, err = run_deco(train_args(llava_data, run, "data.on_bad_sample=skip"), capsys)
    assert code == 0, err
    skipped = [json.loads(x) for x in (run / "skipped_samples.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in skipped) == sorted([records[0]["id"], records[1]["id"]])
    assert {s["reason"] for s in skipped} == {"outside_image_folder"}

    code, _, err = run_deco(train_args(llava_data, tmp_path / "c", "data.allow_outside_image_folder=true"), capsys)
    assert code == 0, err


def test_error_lines_are_not_wrapped_when_stderr_is_not_a_terminal(llava_data, tmp_path, capsys):
    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "blocker"
    deep.parent.mkdir(parents=True)
    deep.write_text("")
    code, _, err = run_deco(train_args(llava_data, deep / "run"), capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert len(line) > 200 and str(deep / "run") in line


def test_a_changed_micro_batch_split_is_refused_unless_allowed(llava_data, tmp_path, capsys):
    """The same global batch split another way sums in another order (about 1e-6 off): not bitwise the run."""
    run = tmp_path / "run"
    assert run_deco(train_args(llava_data, run), capsys)[0] == 0
    code, _, err = run_deco([*train_args(llava_data, run, "train.per_device_batch_size=2"), "--resume"], capsys)
    assert code == 2
    assert "  train.per_device_batch_size: 4 -> 2" in err and "--allow-change train.per_device_batch_size" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["per_device_batch_size"] == 4
    code, _, err = run_deco([*train_args(llava_data, run, "train.per_device_batch_size=2"), "--resume",
                             "--allow-change", "train.per_device_batch_size"], capsys)
    assert code == 0, err
    assert "changed from step 4 on (--allow-change): train.per_device_batch_size: 4 -> 2" in err


def _same_size_other_image(path: Path) -> None:
    """Replace an image by another one of the same byte size, with its modification time set back."""
    before, st = path.read_bytes(), path.stat()
    for shade in range(256):
        Image.new("RGB", Image.open(path).size, (shade, 255 - shade, 7)).save(path)
        if path.stat().st_size == len(before) and path.read_bytes() != before:
            break
    else:
        raise AssertionError("no same-size replacement found")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_content_fingerprint_catches_a_swapped_image_and_an_allowed_data_change_is_kept(llava_data, tmp_path,
                                                                                         capsys):
    _, images = llava_data
    run = tmp_path / "run"
    assert run_deco(train_args(llava_data, run, "data.fingerprint=content"), capsys)[0] == 0
    _same_size_other_image(images / "img3.png")
    args = [*train_args(llava_data, run, "data.fingerprint=content"), "--resume"]
    code, _, err = run_deco(args, capsys)
    assert code == 2
    assert "images changed: 1 modified (content): img3.png" in err
    code, _, err = run_deco([*args, "--allow-change", "data"], capsys)  # a finished run: no step left to run
    assert code == 0, err
    code, _, err = run_deco(args, capsys)  # the accepted data is what the run now records
    assert code == 0, err


def test_a_run_folder_deleted_mid_run_is_one_line_not_silently_recreated(llava_data, tmp_path, capsys, monkeypatch):
    import shutil

    from deco.train.step.loop import Loop

    real, run, calls = Loop.next_step, tmp_path / "run", []

    def delete_at_step_3(self):
        calls.append(1)
        if len(calls) == 3:  # after checkpoint-2: as `rm -rf` by someone else while the job runs
            shutil.rmtree(run)
        return real(self)

    monkeypatch.setattr(Loop, "next_step", delete_at_step_3)
    code, _, err = run_deco(train_args(llava_data, run), capsys)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: training stopped: {run}: the run folder or its lock was removed")
    assert f"no checkpoint of this run is left ({run} is gone)" in last
    assert not run.exists()  # the next save did not recreate the folder without its lock
