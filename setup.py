"""Builds graylane's optional C extensions; the rest of the metadata lives in pyproject.toml.

Theory of operation. Each hot-path module proxy/_fast/X.py is plain Python (the "twin"). The
build copies it to build/cython/proxy/_fast/_X_c.py and Cython compiles that copy into the
extension proxy._fast._X_c. One source for both forms means the twins cannot drift; the copy
lives under build/, so no importable _X_c.py ever appears in the package. An optional
proxy/_fast/_X_c.pxd (Cython's "augmenting .pxd") adds C types to the compiled form only; it is
copied next to the generated source, where Cython looks for it.

The copy ends with a SHA-256 of X.py and every .pxd (proxy._fast.source_digest); proxy._fast
compares it with the sources beside it and refuses an extension built from another version of
them (a stale in-place build).

Failing to build is not fatal: the package then runs on the twins, slower, and the build says
so. GRAYLANE_REQUIRE_EXTENSIONS=1 makes any failure fatal; GRAYLANE_NO_EXTENSIONS=1 builds none.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The modules of proxy/_fast compiled by Cython. A name whose X.py does not exist is skipped.
TWINS = ["http1", "hashing", "matching", "exchange", "routing", "logline"]

FAST_DIR = Path("proxy", "_fast")
GENERATED_DIR = Path("build", "cython")

# Defaults for every twin. A module may override them in a comment at its top, before the
# docstring: "# cython: boundscheck=False, wraparound=False" once it never indexes out of range.
DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    # Annotations stay documentation: with typing on, `x: bytes` would make the compiled form
    # reject a bytearray and `x: float` would turn into a C double, so the twins would accept
    # different inputs. C types belong in the optional _X_c.pxd.
    "annotation_typing": False,
    # Untyped code indexes lists through Cython's fast path; without these checks an index out of
    # range reads stray memory instead of raising IndexError as the twin does.
    "boundscheck": True,
    "wraparound": True,
}
COMPILE_ARGS = ["-O2"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


REQUIRE = _env_flag("GRAYLANE_REQUIRE_EXTENSIONS")
SKIP = _env_flag("GRAYLANE_NO_EXTENSIONS") and not REQUIRE


def _write_if_changed(path: Path, data: bytes) -> None:
    # An unchanged copy keeps its mtime, so Cython does not translate it again.
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _source_digest(name: str) -> str:
    # proxy/_fast/_digest.py alone (stdlib only), not the package: the build may lack its deps.
    spec = importlib.util.spec_from_file_location("_graylane_digest", FAST_DIR / "_digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_digest(FAST_DIR, name)


def _generate_source(name: str) -> Path:
    """Write build/cython/proxy/_fast/_NAME_c.py (+ .pxd) from proxy/_fast/NAME.py; return its path."""
    source = (FAST_DIR / f"{name}.py").read_bytes()
    target_dir = GENERATED_DIR / FAST_DIR
    target = target_dir / f"_{name}_c.py"
    digest = _source_digest(name)
    trailer = f"\n\n# Appended by setup.py: the {name}.py (and .pxd files) this extension was built from.\n"
    trailer += f"_twin_source_sha256 = {digest!r}\n"
    _write_if_changed(target, source + trailer.encode())

    pxd_name = f"_{name}_c.pxd"
    pxd_copy = target_dir / pxd_name
    if (FAST_DIR / pxd_name).exists():
        _write_if_changed(pxd_copy, (FAST_DIR / pxd_name).read_bytes())
    elif pxd_copy.exists():
        pxd_copy.unlink()
    return target


def _extensions() -> list[Extension]:
    if SKIP:
        print("graylane: GRAYLANE_NO_EXTENSIONS is set, building no C extension")
        return []
    return [
        Extension(
            f"proxy._fast._{name}_c",
            [str(_generate_source(name))],
            extra_compile_args=COMPILE_ARGS,
        )
        for name in TWINS
        if (FAST_DIR / f"{name}.py").exists()
    ]


class BuildTwins(build_ext):
    """build_ext that runs Cython first and turns failures into warnings unless REQUIRE."""

    def finalize_options(self) -> None:
        # Before the base class, which prepares (and keeps) the Extension objects it finds.
        if self.distribution.ext_modules:
            self.distribution.ext_modules = self._cythonize(self.distribution.ext_modules)
        super().finalize_options()

    def _cythonize(self, extensions: list[Extension]) -> list[Extension]:
        try:
            from Cython.Build import cythonize

            result = cythonize(extensions, compiler_directives=DIRECTIVES, force=bool(self.force), quiet=True)
        except Exception as exc:  # Cython missing, or a twin it cannot translate
            if REQUIRE:
                raise
            self._warn(f"Cython could not translate the twins ({exc!r})")
            return []
        for ext in result:
            ext.optional = not REQUIRE  # cythonize does not carry it over from our Extension
        return result

    def run(self) -> None:
        super().run()
        missing = [ext.name for ext in self.extensions if not Path(self.get_ext_fullpath(ext.name)).exists()]
        if missing:
            self._warn(f"not built: {', '.join(missing)}")

    def _warn(self, what: str) -> None:
        bar = "*" * 78
        print(
            f"\n{bar}\ngraylane: {what}.\n"
            "graylane will run on the pure-Python twins (slower). Set GRAYLANE_REQUIRE_EXTENSIONS=1\n"
            f"to make this an error.\n{bar}\n"
        )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildTwins})
