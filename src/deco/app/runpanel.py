"""The training run as every tab shows it: stage, real step counts, a bar and the time left, as HTML."""

from __future__ import annotations

import html
from pathlib import Path

from deco.app.eta import clock_text, describe, read_history
from deco.app.training import RunView

# Measured from this page on the 2-core AMD EPYC VM it was built on (benchmarks/app/acceptance-*-2026-12-06.json:
# 217, 182, 149 and 95 s at load average 2-6, assets cached; issue 28 saw 19 min under heavier load). The
# page says this until the demo folder holds a run of its own.
REFERENCE = "1.6 to 3.6 min with cached assets on a 2-core VM at load 2-6, 19 min under heavy load; more cold"


def train_label(demo_dir: str | Path) -> str:
    """The Train button's text, with the time a run took on this machine when there was one."""
    history = read_history(demo_dir)
    if history.total_s is not None:
        cached = "cold" if history.assets_built else "assets cached"
        took = f"took {clock_text(history.total_s)} on this machine last time ({cached})"
    else:
        took = REFERENCE
    return f"Train the quick demo pair (deco demo --quick: {took})"


def run_html(view: RunView) -> str:
    """The run's box: nothing when idle, else stage, steps per stage, bar and time left (or the outcome)."""
    if view.state == "idle":
        return ""
    if view.state == "failed":
        return f'<div id="run-box"><strong>Error:</strong> {html.escape(view.error or "")}</div>'
    if view.state == "done":
        return (f'<div id="run-box">The demo run finished in {clock_text(view.seconds or 0)} '
                "(measured on this machine); its models are in the lists above.</div>")
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in describe(view.steps))
    est = view.estimate
    if est is None or est.seconds is None:
        left, fraction = "time left: measuring the first steps", None
    else:
        bound = "" if est.complete else "at least "
        left = f"about {bound}{clock_text(est.seconds)} left (from the speed measured in this run)"
        fraction = est.fraction
    bar = (f'<progress id="run-bar" max="1" value="{fraction:.3f}"></progress> {fraction:.0%}'
           if fraction is not None else '<progress id="run-bar"></progress>')
    return (f'<div id="run-box"><strong class="run-title">Training the quick demo pair</strong> '
            f"(this server's one run: every tab shows it, closing a tab does not stop it). "
            f"{clock_text(view.elapsed_s)} so far; {html.escape(view.stage)}.<br>{bar} "
            f'<span id="run-left">{left}</span><ul>{lines}</ul>'
            f"<small>{html.escape(view.line)}</small></div>")
