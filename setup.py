"""Build script: compiles the optional Cython fast path, falling back to the pure-Python twins.

The build never fails because a compiler or Cython is missing: it prints
"Accelerated" when the extensions were built and "Pure" when the twins will be used.
Set GATEWAY_NO_EXTENSIONS=1 to skip compiling altogether.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

FASTPATH_MODULES = ["router", "codec", "projection"]


def _extensions() -> list:
    if os.environ.get("GATEWAY_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("*** Pure: Cython is not installed, the fast path uses its Python twins", file=sys.stderr)
        return []
    from setuptools import Extension

    sources = [
        Extension(f"fastpath.{name}", [f"fastpath/{name}.pyx"], extra_compile_args=["-O3"])
        for name in FASTPATH_MODULES
        if os.path.exists(f"fastpath/{name}.pyx")
    ]
    return cythonize(sources, language_level=3, quiet=True,
                     compiler_directives={"boundscheck": False, "wraparound": False})


class OptionalBuildExt(build_ext):
    """Build the extensions when possible; never fail the install because of them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "Pure"
            print(f"*** Pure: the fast path could not be compiled ({exc}); using Python twins",
                  file=sys.stderr)
            return
        if self.extensions:
            print("*** Accelerated: the Cython fast path was compiled", file=sys.stderr)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"*** Pure: {ext.name} failed to compile ({exc}); using its Python twin",
                  file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
