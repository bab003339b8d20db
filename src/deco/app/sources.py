"""Which models the page offers: the ones named with --model, else the ones `deco demo` trained.

`deco demo` writes each trained model to `<out>/runs/seed<S>/<projector>/stage2/final` (out defaults to
`deco-demo`), so the app finds them there without any download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deco.errors import ConfigError
from deco.model.builder import CONFIG_FILE

DEFAULT_DEMO_DIR = Path("deco-demo")
DEMO_COMMAND = "deco demo --quick"
# The demo's headline pair first, so the page's default comparison is DeCo against the Q-Former.
PREFERRED = ("deco", "qformer", "mlp", "cabstractor", "dabstractor")


@dataclass(frozen=True)
class ModelChoice:
    """One model the page can load: the label shown and the folder it loads from."""

    label: str
    path: Path
    reduce: str | None = None  # a training-free token reducer applied on load (deco.reducers), NAME:TOKENS


def demo_models(demo_dir: str | Path = DEFAULT_DEMO_DIR) -> list[ModelChoice]:
    """The final models of a `deco demo` output folder, DeCo and Q-Former first, then by name and seed."""
    runs = Path(demo_dir) / "runs"
    found: list[tuple[int, str, ModelChoice]] = []
    for final in sorted(runs.glob("seed*/*/stage2/final")):
        if not (final / CONFIG_FILE).is_file():
            continue  # a run that was stopped before saving its final model
        projector, seed = final.parent.parent.name, final.parent.parent.parent.name
        rank = PREFERRED.index(projector) if projector in PREFERRED else len(PREFERRED)
        label = f"{projector} (demo {seed})" if seed != "seed0" else f"{projector} (demo)"
        found.append((rank, f"{projector}/{seed}", ModelChoice(label, final)))
    return [choice for _, _, choice in sorted(found, key=lambda t: (t[0], t[1]))]


def explicit_models(paths: list[str]) -> list[ModelChoice]:
    """--model paths as choices, labelled by folder name (its parent too where the name is `final`)."""
    if len(paths) > 2:
        raise ConfigError(f"deco app compares at most two models side by side; got {len(paths)} --model options")
    choices = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"--model {raw}: no such folder (give a saved model folder or a run directory)")
        name = f"{path.parent.name}/{path.name}" if path.name == "final" else path.name
        choices.append(ModelChoice(name, path))
    if len(choices) == 2 and choices[0].label == choices[1].label:
        choices[1] = ModelChoice(f"{choices[1].label} (2)", choices[1].path)
    return choices


def no_models_message(demo_dir: str | Path) -> str:
    """What the page says when it has nothing to load: the one command that makes the demo models."""
    return (f"No models found: no --model was given and `{demo_dir}` holds no demo runs "
            f"(`runs/seed*/<projector>/stage2/final`). Make the DeCo and Q-Former pair with one command, "
            f"`{DEMO_COMMAND}` (no downloads; the button below says how long it takes), or press "
            f"**Train the quick demo pair** below.")
