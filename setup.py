"""Maps the top-level folders onto one import package: `shared/` -> `lineinspect.shared`, etc.

Metadata lives in pyproject.toml; only the package mapping needs code (setuptools cannot
rename a found package tree from pyproject alone).
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("shared", "services", "schemas")

setup(
    package_dir={f"lineinspect.{name}": name for name in TOP_LEVEL},
    packages=[
        f"lineinspect.{pkg}"
        for pkg in find_packages(include=[f"{name}*" for name in TOP_LEVEL])
    ],
)
