"""Running `deco` as a user does, in this process: argv in, exit status and output out (tests of issue 14)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest


def run_deco(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`deco ARGS` through deco.cli.main (the console script's entry): (exit status, stdout, stderr)."""
    from deco.cli import main

    capsys.readouterr()  # drop what came before
    argv, sys.argv = sys.argv, ["deco", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def train_args(data: tuple, out: object, *extra: str, steps: int = 4) -> list[str]:
    """`deco train configs/tiny.yaml` on the toy data: 4-sample steps, a checkpoint every 2 steps."""
    train_file, images = data
    return ["train", "configs/tiny.yaml", f"data.train_file={train_file}", f"data.image_folder={images}",
            f"train.output_dir={out}", f"train.max_steps={steps}", "train.save_every=2", "train.quiet=true",
            "train.global_batch_size=4", "train.per_device_batch_size=4", *extra]


def assert_resumed_like_reference(run: object, reference: object) -> None:
    """A resumed run equals an uninterrupted one bit for bit: steps 1-6, losses, gradient norms and the final
    checkpoint's weights."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from deco.train.report.metrics import read_metrics

    run, reference = Path(str(run)), Path(str(reference))
    got, want = read_metrics(run / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, 7))
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    assert [r["grad_norm"] for r in got] == [r["grad_norm"] for r in want]
    a = load_file(str(run / "checkpoint-6" / "trainable.safetensors"))
    b = load_file(str(reference / "checkpoint-6" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)
