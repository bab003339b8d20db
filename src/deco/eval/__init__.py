"""Benchmark scoring by the official rules (VQAv2, TextVQA, VizWiz, GQA, POPE, MME, MMBench, ScienceQA, SEED).

`score(benchmark, preds, data)` reads a prediction file and the benchmark's local annotations and returns
the metrics; `load_benchmark(name, data)` gives the questions (ids, text, images, options) for a runner.
"""

from deco.eval.annotations import Sample
from deco.eval.predictions import Prediction, read_predictions
from deco.eval.score import benchmark_names, load_benchmark, score, summarize

__all__ = ["Prediction", "Sample", "benchmark_names", "load_benchmark", "read_predictions", "score", "summarize"]
