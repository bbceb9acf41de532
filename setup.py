"""The optional C extension; everything else is in pyproject.toml.

engine/_speedups.c holds native twins of hot loops whose pure-Python versions stay the
reference and the fallback, so a machine without a C compiler still installs (with a
warning) and runs, only slower. TICKWIRE_NO_SPEEDUPS=1 at run time ignores a built one.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engine._speedups",
            sources=["engine/_speedups.c"],
            optional=True,  # no compiler: the pure-Python paths
        )
    ],
)
