"""proxy._fast chooses between each compiled module and its pure-Python twin.

The check that matters most: an extension that was built (or that the run was told to expect
with GRAYLANE_EXPECT_EXTENSIONS=1) must really be the one in use; a silent fallback to the
twins would leave graylane several times slower with every test still green.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import proxy._fast as fast

ROOT = Path(__file__).resolve().parents[1]
FAST_DIR = Path(fast.__file__).parent


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _setup_twins() -> list[str]:
    """The TWINS list of setup.py, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TWINS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no TWINS list")


TWINS = _setup_twins()
PRESENT = [name for name in TWINS if (FAST_DIR / f"{name}.py").exists()]


def _built(name: str) -> list[Path]:
    return sorted(FAST_DIR.glob(f"_{name}_c.*.so")) + sorted(FAST_DIR.glob(f"_{name}_c.*.pyd"))


def _run_python(code: str, **env: str) -> dict:
    """Run code in a fresh interpreter on this source tree; it prints one JSON document."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- the real extensions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESENT)
def test_extension_that_was_built_is_the_one_in_use(name: str) -> None:
    if fast.NO_EXTENSIONS:
        pytest.skip("GRAYLANE_NO_EXTENSIONS is set: twins are forced")
    built = _built(name)
    if not built and not _flag("GRAYLANE_EXPECT_EXTENSIONS"):
        pytest.skip(f"no extension built for {name} (set GRAYLANE_EXPECT_EXTENSIONS=1 to require one)")
    probe = fast._probe(name)
    assert probe.module is not None, f"{name}: extension expected ({built or 'EXPECT set'}) but {probe.why}"
    assert fast.load(name) is probe.module
    assert fast.COMPILED[name] is True
    assert getattr(fast, name) is probe.module


@pytest.mark.parametrize("name", PRESENT)
def test_both_forms_are_distinct_modules(name: str) -> None:
    twin = fast.pure(name)
    assert twin.__name__ == f"proxy._fast.{name}"
    ext = fast.compiled(name)
    if ext is not None:
        assert ext.__name__ == f"proxy._fast._{name}_c"
        assert ext is not twin
        assert ext._twin_source_sha256 == fast.source_digest(FAST_DIR, name)


def test_no_extensions_env_forces_the_twins() -> None:
    code = (
        "import json, proxy._fast as f\n"
        f"mods = {{n: getattr(f, n).__name__ for n in {PRESENT!r}}}\n"
        "print(json.dumps({'flag': f.NO_EXTENSIONS, 'compiled': f.COMPILED, 'mods': mods}))\n"
    )
    seen = _run_python(code, GRAYLANE_NO_EXTENSIONS="1")
    assert seen["flag"] is True
    assert seen["compiled"] == {name: False for name in PRESENT}
    assert seen["mods"] == {name: f"proxy._fast.{name}" for name in PRESENT}


def test_from_import_gives_the_chosen_form_in_a_fresh_process() -> None:
    # The twin is imported first, as a test comparing both forms would: the import system then
    # binds it on the package, which must not shadow the chosen form.
    lines = ["import json, proxy._fast as f", "out = {}"]
    for name in PRESENT:
        lines += [
            f"import proxy._fast.{name}",
            f"from proxy._fast import {name}",
            f"out[{name!r}] = [{name}.__name__, f.COMPILED[{name!r}], f._probe({name!r}).why]",
        ]
    lines.append("print(json.dumps(out))")
    seen = _run_python("\n".join(lines), GRAYLANE_NO_EXTENSIONS="")
    for name in PRESENT:
        module_name, was_compiled, why = seen[name]
        assert module_name == (f"proxy._fast._{name}_c" if was_compiled else f"proxy._fast.{name}")
        assert was_compiled == bool(_built(name)), f"{name}: built {_built(name)}, but {why}"


def test_importing_the_package_imports_no_twin() -> None:
    code = (
        "import json, sys, proxy._fast\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('proxy._fast.'))))\n"
    )
    assert _run_python(code) == ["proxy._fast._digest"]  # stdlib only; no twin, no extension


# --- layout rules ----------------------------------------------------------------------------------


def test_no_generated_source_is_left_in_the_package() -> None:
    assert sorted(p.name for p in FAST_DIR.glob("_*_c.py")) == []


def test_every_public_module_of_fast_is_a_listed_twin() -> None:
    public = sorted(p.stem for p in FAST_DIR.glob("*.py") if not p.name.startswith("_"))
    unlisted = [name for name in public if name not in TWINS]
    assert unlisted == [], "add these to TWINS in setup.py, or rename a helper module to _name.py"


# --- the loader's rules, on stand-in modules (no compiler needed) ----------------------------------


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """A twin 'standin' with source in tmp_path; returns a function installing its extension."""
    source = b"VALUE = 'pure'\n"
    (tmp_path / "standin.py").write_bytes(source)
    twin = types.ModuleType("proxy._fast.standin")
    monkeypatch.setattr(fast, "_HERE", tmp_path)
    monkeypatch.setattr(fast, "_chosen", {})
    monkeypatch.setattr(fast, "COMPILED", {})
    monkeypatch.setattr(fast, "NO_EXTENSIONS", False)
    monkeypatch.setitem(sys.modules, "proxy._fast.standin", twin)
    monkeypatch.delitem(sys.modules, "proxy._fast._standin_c", raising=False)

    def install(digest: str | None = hashlib.sha256(source).hexdigest()) -> types.ModuleType:
        ext = types.ModuleType("proxy._fast._standin_c")
        if digest is not None:
            ext._twin_source_sha256 = digest
        monkeypatch.setitem(sys.modules, "proxy._fast._standin_c", ext)
        return ext

    yield twin, install
    fast.__dict__.pop("standin", None)


def test_current_extension_is_chosen(standin) -> None:
    twin, install = standin
    ext = install()
    assert fast.load("standin") is ext
    assert fast.COMPILED == {"standin": True}
    assert fast.standin is ext
    assert fast.pure("standin") is twin
    fast.standin = twin  # what importing proxy._fast.standin does to the package
    assert fast.standin is ext


def test_without_extension_the_twin_is_chosen(standin) -> None:
    twin, _ = standin
    assert fast.compiled("standin") is None
    assert fast.load("standin") is twin
    assert fast.COMPILED == {"standin": False}


def test_no_extensions_flag_forces_the_twin(standin, monkeypatch) -> None:
    twin, install = standin
    ext = install()
    monkeypatch.setattr(fast, "NO_EXTENSIONS", True)
    assert fast.load("standin") is twin
    assert fast.compiled("standin") is ext  # still reachable for comparisons
    assert fast.COMPILED == {"standin": False}


@pytest.mark.parametrize("digest", ["0" * 64, None])
def test_stale_extension_is_refused_with_a_warning(standin, digest) -> None:
    twin, install = standin
    install(digest)
    with pytest.warns(RuntimeWarning, match="another version of standin.py"):
        assert fast.load("standin") is twin
    assert fast.COMPILED == {"standin": False}
    probe = fast._probe("standin")
    assert probe.stale and probe.module is None


def test_a_changed_pxd_makes_the_extension_stale(standin, tmp_path) -> None:
    """Any .pxd counts: an extension may cimport another's types and was built for that layout."""
    twin, install = standin
    (tmp_path / "_other_c.pxd").write_bytes(b"cdef class Other:\n    cdef public object a\n")
    install(fast.source_digest(tmp_path, "standin"))
    assert fast._probe("standin").module is not None
    (tmp_path / "_other_c.pxd").write_bytes(b"cdef class Other:\n    cdef public int a\n")
    with pytest.warns(RuntimeWarning, match="another version of standin.py or a .pxd"):
        assert fast.load("standin") is twin


def test_extension_runs_only_with_the_extensions_it_requires(standin, monkeypatch) -> None:
    twin, install = standin
    ext = install()
    monkeypatch.setitem(fast.REQUIRES, "standin", ("http1",))
    fast._chosen["http1"] = fast.pure("http1")  # as when http1's extension is missing or stale
    assert fast.load("standin") is twin
    assert fast.COMPILED["standin"] is False
    fast._chosen.pop("standin")
    fast._chosen["http1"] = types.ModuleType("proxy._fast._http1_c")
    assert fast.load("standin") is ext


def test_choice_is_made_once(standin) -> None:
    twin, install = standin
    assert fast.load("standin") is twin
    install()
    assert fast.load("standin") is twin


def test_unknown_and_invalid_names() -> None:
    with pytest.raises(ModuleNotFoundError):
        fast.load("no_such_twin")
    with pytest.raises(ImportError):
        from proxy._fast import no_such_twin  # noqa: F401
    assert not hasattr(fast, "no_such_twin")
    for bad in ("_private", "a.b", ""):
        with pytest.raises(ValueError):
            fast.load(bad)
