"""Register deco's model type with transformers' Auto classes whenever both are imported, in any order.

`import deco` must stay light (`deco --help` loads neither torch nor transformers), so registering cannot
import transformers itself. Instead: if transformers is already imported, register now; otherwise a
one-shot import hook registers right after transformers finishes importing. Then
`AutoModelForImageTextToText.from_pretrained(folder_with_model_type_deco)` works after `import deco`.
The same hook runs other deco set-up that needs transformers (`when_transformers_imported`, e.g. deco.model
quieting weight-loading bars) without importing it early.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType

_TARGET = "transformers"
_MODULE = "deco.interop.hf_model"  # registers the classes when imported
_PENDING: list[Callable[[], object]] = []  # run, in order, once transformers finishes importing


def register_now() -> None:
    """Register DecoVLMConfig and DecoForConditionalGeneration with transformers' Auto classes."""
    if _MODULE in sys.modules:  # imported, or being imported right now: it registers at the end of its import
        return
    try:
        importlib.import_module(_MODULE)
    except Exception as exc:  # a broken registration must never break `import transformers`
        warnings.warn(f"deco: could not register its model type with transformers' Auto classes: {exc}",
                      stacklevel=2)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of `transformers` so the pending calls follow its import."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from finding us again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            while _PENDING:
                _PENDING.pop(0)()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def when_transformers_imported(callback: Callable[[], object]) -> None:
    """Call `callback` now if transformers is imported, else right after it finishes importing (once)."""
    if _TARGET in sys.modules:
        callback()
        return
    if callback not in _PENDING:
        _PENDING.append(callback)
    if not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


def install() -> None:
    """Register now if transformers is imported, else once it is."""
    when_transformers_imported(register_now)
