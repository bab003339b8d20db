"""`deco bench`: what fewer visual tokens buy, measured side by side (heavy imports inside)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from deco.errors import ConfigError


def _ints(text: str | None, name: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} must be a comma-separated list of integers, got '{text}'") from None


def _names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the deco CLI."""

    @app.command("bench")
    def bench_command(
        size: Annotated[str, typer.Option(help="tiny (under a minute to several on 2 CPU cores, by load and "
                                                "projectors) or 7b-proxy (LLaVA-1.5 shapes, truncated LLM, "
                                                "extrapolated to 32 layers).")] = "tiny",
        projectors: Annotated[str | None, typer.Option(help="Comma-separated projector names, or 'all'. "
                                                            "mlp (the baseline) is always included.")] = None,
        tokens: Annotated[str | None, typer.Option(help="Token budgets for compressing projectors, e.g. "
                                                        "576,144,64.")] = None,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
        dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (use bfloat16 on GPUs).")] = "float32",
        repeats: Annotated[int | None, typer.Option(help="Timed rounds (each runs every configuration once).")] = None,
        warmup: Annotated[int | None, typer.Option(help="Untimed rounds before the timed ones.")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Images (samples) per step.")] = None,
        out: Annotated[Path | None, typer.Option(help="Output folder for bench.json, bench.md, bench.png "
                                                      "(default: runs/bench/SIZE-DEVICE).")] = None,
        vision: Annotated[str | None, typer.Option(help="HF id or path of a CLIP/SigLIP vision tower "
                                                        "instead of the size's random one.")] = None,
        llm: Annotated[str | None, typer.Option(help="HF id or path of a causal LM instead of the size's "
                                                     "random one.")] = None,
        proxy_layers: Annotated[int, typer.Option(help="Layers of the 7b-proxy vision tower and LLM.")] = 2,
        peer: Annotated[bool, typer.Option(help="Compare our mlp model with HF LlavaForConditionalGeneration.")] = True,
        peer_repeats: Annotated[int | None, typer.Option(help="Interleaved forwards of ours and HF's in the "
                                                              "peer timing.")] = None,
        memory_budget: Annotated[float | None, typer.Option(help="GiB the run may use (default: what is "
                                                                 "available).")] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: DECO_THREADS, else "
                                                           "OMP_NUM_THREADS, else 1).")] = None,
        note: Annotated[list[str] | None, typer.Option(help="A note recorded in the results (repeatable).")] = None,
        precision: Annotated[str | None, typer.Option(help="Training steps' train.precision: fp32, bf16 or fp16 "
                                                         "(default: bf16 for a bf16/fp16 --dtype, else fp32).")] = None,
        accum: Annotated[int | None, typer.Option(help="Micro-batches per optimizer step (gradient accumulation; "
                                                       "default: the size's recipe).")] = None,
        checkpointing: Annotated[bool | None, typer.Option(
            "--grad-checkpointing/--no-grad-checkpointing",
            help="Activation checkpointing in stage 2 (default: the size's recipe; LLaVA-1.5 uses it).")] = None,
        optimizer: Annotated[str, typer.Option(help="train.optimizer: auto, fused, foreach or for_loop.")] = "auto",
        workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: deco train's auto rule).")] = None,
        compile: Annotated[bool, typer.Option(help="train.compile: torch.compile the LLM and projectors.")] = False,
        reduce: Annotated[str | None, typer.Option(help="Training-free reducers on the mlp model, comma-separated: "
                                                        "NAME (at each --tokens budget) or NAME:N, e.g. "
                                                        "random,pool,visionzip,fastv:64. Rows beside the "
                                                        "projectors: prefill FLOPs, time to first token, KV "
                                                        "bytes, selection cost.")] = None,
    ) -> None:
        """Measure parameters, FLOPs, step times, memory, prefill/decode and KV cache for each projector."""
        from deco.bench.report import print_table, write_outputs
        from deco.bench.runner import BenchOptions, run_bench
        from deco.console import output_console

        console = output_console()
        opts = BenchOptions(
            size=size, projectors=_names(projectors), tokens=_ints(tokens, "tokens"), device=device, dtype=dtype,
            repeats=repeats, warmup=warmup, batch_size=batch_size, vision=vision, llm=llm,
            proxy_layers=proxy_layers, peer=peer, peer_repeats=peer_repeats, memory_budget_gib=memory_budget, threads=threads,
            notes=list(note or []), precision=precision, accum=accum, checkpointing=checkpointing,
            optimizer=optimizer, workers=workers, compile=compile, reduce=_names(reduce),
        )
        data = run_bench(opts, log=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False))
        data["command"] = "deco " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        paths = write_outputs(data, out or Path("runs/bench") / f"{size}-{device}")
        print_table(data, console)
        console.print(f"wrote {paths['json']}, {paths['md']}, {paths['plot']}")
