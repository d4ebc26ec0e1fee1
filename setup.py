"""Packages: `sandbox` and its sub-packages, plus the top-level experiments/ and configs/ folders,
installed inside it as `sandbox.experiments` and `sandbox.configs` (YAML package data), so an
installed sandbox finds its presets from any folder and adds no top-level `experiments` package."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["sandbox", "sandbox.*"]) + ["sandbox.experiments", "sandbox.configs"],
      package_dir={"sandbox.experiments": "experiments", "sandbox.configs": "configs"})
