"""Hot-path modules, each in two forms that must behave the same ("twins").

``proxy/_fast/X.py`` is plain Python; the build compiles the same source with Cython into the
extension ``proxy._fast._X_c`` (see setup.py). Code elsewhere writes::

    from proxy._fast import http1

and gets the extension when it is built, current and allowed, else the pure-Python twin. The
choice is made on first use of a name, not when this package is imported, and then kept.

- ``GRAYLANE_NO_EXTENSIONS=1`` forces the pure twins (read once, at import).
- An extension built from another version of X.py or of any .pxd here (a stale in-place build)
  is refused with a RuntimeWarning: the build records ``source_digest`` of what it compiled.
  Every .pxd counts, not only X's own: an extension that cimports another's types was compiled
  against that one's layout too.
- An extension listed in ``REQUIRES`` runs only if the twins it depends on run compiled.
- ``pure(name)`` and ``compiled(name)`` give each form explicitly, for tests that compare them;
  ``COMPILED`` says which form each name resolved to.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from proxy._fast._digest import source_digest

__all__ = ["COMPILED", "NO_EXTENSIONS", "REQUIRES", "compiled", "load", "pure", "source_digest"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


NO_EXTENSIONS: bool = _env_flag("GRAYLANE_NO_EXTENSIONS")

# Which names have been resolved, and whether to the extension.
COMPILED: dict[str, bool] = {}

_chosen: dict[str, ModuleType] = {}
_HERE = Path(__file__).parent


def _check_name(name: str) -> None:
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"not a twin module name: {name!r}")


def pure(name: str) -> ModuleType:
    """The pure-Python twin ``proxy._fast.<name>``."""
    _check_name(name)
    return importlib.import_module(f"{__name__}.{name}")


class _Probe(NamedTuple):
    module: ModuleType | None  # the extension, when usable
    why: str
    stale: bool = False


def _probe(name: str) -> _Probe:
    _check_name(name)
    try:
        module = importlib.import_module(f"{__name__}._{name}_c")
    except ImportError as exc:
        return _Probe(None, f"cannot import {__name__}._{name}_c: {exc}")
    try:
        digest = source_digest(_HERE, name)
    except OSError:
        return _Probe(module, "loaded; no source beside it to compare")
    if getattr(module, "_twin_source_sha256", None) != digest:
        built = getattr(module, "__file__", module.__name__)
        why = f"{built} was built from another version of {name}.py or a .pxd: rebuild it (make venv)"
        return _Probe(None, why, stale=True)
    return _Probe(module, "loaded")


def compiled(name: str) -> ModuleType | None:
    """The extension ``proxy._fast._<name>_c`` if it is built and current, else None.

    Ignores ``NO_EXTENSIONS``: tests use it to compare the two forms.
    """
    probe = _probe(name)
    if probe.stale:
        warnings.warn(probe.why, RuntimeWarning, stacklevel=2)
    return probe.module


# An extension that uses another's C types (a cimport) runs only when that one runs compiled too:
# it would refuse the objects of the pure twin.
REQUIRES: dict[str, tuple[str, ...]] = {"exchange": ("http1", "routing")}


def load(name: str) -> ModuleType:
    """The form of ``name`` that graylane runs: the extension if allowed and usable, else the twin."""
    module = _chosen.get(name)
    if module is None:
        fast = None if NO_EXTENSIONS else compiled(name)
        if fast is not None and not all(load(dep) is not pure(dep) for dep in REQUIRES.get(name, ())):
            fast = None
        module = fast if fast is not None else pure(name)
        _chosen[name] = module
        COMPILED[name] = fast is not None
        globals()[name] = module  # later lookups skip __getattr__
    return module


def __getattr__(name: str) -> ModuleType:
    # Called only for names not in the module dict: `from proxy._fast import http1` lands here.
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return load(name)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


class _Package(ModuleType):
    # Importing a twin (`import proxy._fast.http1`, or pure() in a test) makes the import system
    # bind the submodule as an attribute of this package; `from proxy._fast import http1` would then
    # give the twin even where the extension is chosen. Dropping that binding keeps every
    # attribute lookup going through load().
    def __setattr__(self, attr: str, value: object) -> None:
        if isinstance(value, ModuleType) and value.__name__ == f"{__name__}.{attr}":
            return
        super().__setattr__(attr, value)


sys.modules[__name__].__class__ = _Package
