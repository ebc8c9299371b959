"""Debian packages for the bundle, resolved for a minimal Debian 12.

The build machine's own packages must not decide what the bundle holds (what
it has installed, apt would not download), so apt resolves the packages inside
a ``debootstrap --variant=minbase`` root of the target release: the bundle gets
each package that such a host lacks, with all its dependencies. The packages
become a flat apt repository (``Packages`` and ``Release``) that the target's
apt reads from disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"


class BundleBuildError(RuntimeError):
    """The bundle cannot be built; the message says what to fix."""


def role_packages(ansible_dir: Path) -> list[str]:
    """The Debian packages the roles install: every ``<role>_packages`` list in
    their defaults, so the roles stay the one place that names them."""
    packages: set[str] = set()
    for defaults in sorted(ansible_dir.glob("roles/*/defaults/main.yml")):
        for key, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if key.endswith("_packages") and isinstance(value, list):
                packages.update(str(name) for name in value)
    if not packages:
        raise BundleBuildError(f"no <role>_packages lists found under {ansible_dir}/roles/*/defaults/main.yml")
    return sorted(packages)


def _run(argv: list[str | Path], **kwargs: object) -> None:
    try:
        subprocess.run([str(a) for a in argv], check=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise BundleBuildError(f"{argv[0]} is not installed (on Debian: apt-get install {argv[0]})") from None
    except subprocess.CalledProcessError as exc:
        command = " ".join(str(a) for a in argv[:4])
        raise BundleBuildError(f"{command} … failed with exit code {exc.returncode}") from None


def minimal_root(cache: Path, codename: str, mirror: str, security_mirror: str) -> Path:
    """A minbase root of the target release, made once and kept in the cache."""
    root = cache / f"{codename}-minbase"
    if (root / "var/lib/dpkg/status").exists():
        return root
    if os.geteuid() != 0:
        raise BundleBuildError("resolving Debian packages needs debootstrap, which needs root: run the build as root")
    partial = cache / f"{codename}-minbase.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", codename, partial, mirror], stdout=subprocess.DEVNULL)
    (partial / "etc/apt/sources.list").write_text(
        f"deb {mirror} {codename} main\n"
        f"deb {mirror} {codename}-updates main\n"
        f"deb {security_mirror} {codename}-security main\n"
    )
    partial.rename(root)
    return root


def download(root: Path, packages: list[str], dest: Path) -> list[Path]:
    """Download what a host like ``root`` lacks for ``packages`` (no recommends)."""
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    chroot = ["chroot", root, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y"]
    _run([*chroot, "update"], stdout=subprocess.DEVNULL)
    _run([*chroot, "clean"])
    _run([*chroot, "install", "--download-only", "--no-install-recommends", *packages], stdout=subprocess.DEVNULL)
    dest.mkdir(parents=True, exist_ok=True)
    debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
    if not debs:
        raise BundleBuildError(f"apt downloaded nothing for {', '.join(packages)}")
    for deb in debs:
        shutil.copy2(deb, dest / deb.name)
    return [dest / deb.name for deb in debs]


def _control(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout.strip()


def write_repository(repo: Path, codename: str) -> dict[str, str]:
    """``Packages`` and ``Release`` for the .debs in ``repo`` (a flat repository).

    Returns {package: version}."""
    stanzas: list[str] = []
    versions: dict[str, str] = {}
    for deb in sorted(repo.glob("*.deb")):
        control = _control(deb)
        fields = dict(line.split(": ", 1) for line in control.splitlines() if ": " in line and not line[0].isspace())
        versions[fields["Package"]] = fields["Version"]
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        "Origin: appliance-bundle\nLabel: appliance-bundle\n"
        f"Suite: {codename}\nCodename: {codename}\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S UTC}\n"
        "Architectures: amd64 all\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )
    return versions
