"""Figures: stage-2 loss curves, accuracy per family, learning curves, and example test images with
every projector's answers."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: list[float], width: int) -> np.ndarray:
    if len(values) < width or width <= 1:
        return np.asarray(values)
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="valid")


def loss_plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Stage-1 and stage-2 training loss per projector (mean over seeds, moving average of 20 steps)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 3]})
    for ax, stage in zip(axes, ("stage1", "stage2"), strict=True):
        for name in dict.fromkeys(r["projector"] for r in runs):
            curves = [np.asarray([loss for _, loss in r["losses"][stage]]) for r in runs if r["projector"] == name]
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            smooth = _smooth(mean.tolist(), 20 if stage == "stage2" else 5)
            ax.plot(np.arange(len(smooth)) + (n - len(smooth)) + 1, smooth, label=name)
        ax.set_xlabel("optimizer step")
        ax.set_title("stage 1 (projector only)" if stage == "stage1" else "stage 2 (projector + LM)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (per answer token)")
    axes[1].legend()
    _save(fig, path)


def family_bars(summary: dict[str, Any], baseline: dict[str, float], path: Path, families: Sequence[str]) -> None:
    """Grouped bars: accuracy per family per projector, SD over seeds as error bars, majority answer marked."""
    plt = _pyplot()
    names = list(summary)
    fams = [f for f in families if f in next(iter(summary.values()))["final"]["families"]]
    x = np.arange(len(fams))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for i, name in enumerate(names):
        stats = [summary[name]["final"]["families"][f] for f in fams]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, [s["mean"] for s in stats], width,
               yerr=[s["std"] for s in stats], capsize=2, label=f"{name} ({summary[name]['visual_tokens']} tok)")
    ax.scatter(x, [baseline.get(f, 0) for f in fams], marker="_", s=900, color="black", zorder=5,
               label="majority answer")
    ax.set_xticks(x, [f + ("\n(localisation)" if f == "cell" else "") for f in fams])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exact-match accuracy (held out)")
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def learning_curves(summary: dict[str, Any], path: Path) -> None:
    """Overall and spatial accuracy at each checkpoint (convergence speed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key in zip(axes, ("overall", "spatial"), strict=True):
        for name, s in summary.items():
            steps = [p["step"] for p in s["curve"]]
            mean = np.asarray([p[key]["mean"] for p in s["curve"]])
            std = np.asarray([p[key]["std"] for p in s["curve"]])
            ax.plot(steps, mean, marker="o", label=name)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        ax.set_title(f"{key} accuracy (curve subset of the test split)")
        ax.set_xlabel("stage-2 step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match")
    axes[0].legend()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _marked(answer: str, truth: str) -> str:
    from deco.demo.core.evaluate import normalize

    return answer if normalize(answer) == normalize(truth) else f"{answer} ✗"


def example_figures(
    test: list[dict[str, Any]], answers: dict[str, dict[str, str]], image_folder: Path, count: int, out_dir: Path
) -> list[Path]:
    """One PNG per example test image: the image, and per question the truth and each projector's answer."""
    from PIL import Image

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    images = list(dict.fromkeys(q["image"] for q in test))[:count]
    names = list(answers)
    paths = []
    for k, image in enumerate(images):
        qs = [q for q in test if q["image"] == image]
        fig, (ax_img, ax_txt) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2.6]})
        ax_img.imshow(Image.open(image_folder / image).convert("RGB"), interpolation="nearest")
        side = Image.open(image_folder / image).size[0]
        for edge in (1 / 3, 2 / 3):  # the 3x3 cells the questions talk about
            ax_img.axhline(edge * side - 0.5, color="white", lw=0.4, alpha=0.5)
            ax_img.axvline(edge * side - 0.5, color="white", lw=0.4, alpha=0.5)
        ax_img.axis("off")
        ax_img.set_title(image)
        rows = [["question", "truth", *names]]
        for q in qs:
            rows.append([textwrap.shorten(q["question"], 30), q["answer"],
                         *[_marked(answers[n].get(q["id"], ""), q["answer"]) for n in names]])
        ax_txt.axis("off")
        rest = 0.72 / (len(rows[0]) - 1)
        table = ax_txt.table(cellText=rows[1:], colLabels=rows[0], loc="center", cellLoc="left",
                             colWidths=[0.28] + [rest] * (len(rows[0]) - 1))
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.scale(1, 1.25)
        fig.tight_layout()
        path = out_dir / f"example_{k}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
