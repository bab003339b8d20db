"""Shared fixtures: a tiny LLaVA-format dataset (JSON + PNG images) written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from deco.data.toy import write_toy_dataset


@pytest.fixture(scope="session", autouse=True)
def private_data_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tokenized-index caches (data.cache_dir: auto) go to a folder of this test session, not ~/.cache,
    so that tests neither share nor leave caches (subprocesses inherit the variable)."""
    import os

    before = os.environ.get("DECO_DATA_CACHE")
    os.environ["DECO_DATA_CACHE"] = str(tmp_path_factory.mktemp("deco-cache"))
    yield
    if before is None:
        os.environ.pop("DECO_DATA_CACHE", None)
    else:
        os.environ["DECO_DATA_CACHE"] = before

# The library's toy dataset writer, under the name the tests use.
write_llava_dataset = write_toy_dataset


@pytest.fixture
def llava_data(tmp_path: Path) -> tuple[Path, Path]:
    """12 image-caption samples: (train.json, image folder)."""
    return write_llava_dataset(tmp_path / "data")


@pytest.fixture
def torch_one_thread():
    """Run torch on one thread: tiny models run faster so (no thread hand-offs, and no spinning when the
    machine is busy), and subprocesses given OMP_NUM_THREADS=1 compute bit-identical results."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread_module():
    """torch on one thread for a whole module (module-scoped fixtures build models before tests run)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def saved_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny.yaml built with seed 0 and saved through save_model (a model folder)."""
    import torch

    from deco.config import load_config
    from deco.model import build_model, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model"
    save_model(build_model(load_config("configs/tiny.yaml", [])), path)
    return path


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every prompt the evaluation Generator is asked to answer."""
    from deco.eval.generation import Generator

    prompts: list[str] = []
    original = Generator.generate

    def spy(self, batch_prompts, images, max_new_tokens, **kw):
        prompts.extend(batch_prompts)
        return original(self, batch_prompts, images, max_new_tokens, **kw)

    monkeypatch.setattr(Generator, "generate", spy)
    return prompts
