"""The wheelhouse: the appliance and every dependency, as wheels, at the pinned versions.

``pip wheel`` builds what has no wheel (the appliance itself, llama-cpp-python)
and fetches the rest; CPU torch comes first, as in ``make install``, so nothing
pulls a CUDA build. ``requirements.txt`` pins every wheel exactly: the target
installs from it with ``--no-index``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from appliance.bundle.debian import BundleBuildError

TORCH = "torch==2.13.0"
# name-version(-build)?-python-abi-platform.whl
_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)
# What a Debian 12 x86-64 host with CPython 3.11 can install.
_PLATFORMS = re.compile(r"^(any|linux_x86_64|manylinux\w*_x86_64)$")
_PYTHONS = re.compile(r"^(py3|py2\.py3|cp3\d*|py3\d+)$")


def build_wheelhouse(source: Path, constraints: Path, dest: Path) -> dict[str, str]:
    """Fill ``dest`` with wheels; returns {distribution: version}."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=OFF")}
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), "-c", str(constraints)]
    for what in ([TORCH], [str(source)]):
        result = subprocess.run([*pip, *what], env=env)
        if result.returncode:
            raise BundleBuildError(f"pip wheel {' '.join(what)} failed (exit code {result.returncode})")
    return pin_wheels(dest)


def pin_wheels(wheelhouse: Path) -> dict[str, str]:
    """Write ``requirements.txt`` beside the wheels; refuse a wheel the target cannot install."""
    pins: dict[str, str] = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        match = _WHEEL.match(wheel.name)
        if not match:
            raise BundleBuildError(f"{wheel.name} is not a wheel file name")
        if not _PLATFORMS.match(match["plat"].split(".")[-1]) or not any(
            _PYTHONS.match(tag) for tag in match["py"].split(".")
        ):
            raise BundleBuildError(f"{wheel.name} does not install on CPython 3.11 / x86-64 Linux")
        name = match["name"].lower().replace("_", "-")
        if name in pins and pins[name] != match["version"]:
            raise BundleBuildError(f"two versions of {name} in the wheelhouse: {pins[name]} and {match['version']}")
        pins[name] = match["version"]
    (wheelhouse / "requirements.txt").write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    return pins
