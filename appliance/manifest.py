"""The model manifest (``models/manifest.toml``): which model files the
appliance uses, where they live on disk, and whether they are the pinned ones."""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
import typing
from pathlib import Path

import msgspec

# What a chat model can be trusted with: ``decide`` (judge whether a passage
# answers a question), ``rewrite`` (write a better search query), ``generate``
# (write an answer from sources), ``tools`` (call tools). The agent asks a
# model only for what its manifest entry lists, and decides the rest itself.
Capability = typing.Literal["decide", "rewrite", "generate", "tools"]
CAPABILITIES: tuple[str, ...] = typing.get_args(Capability)


class ModelFile(msgspec.Struct, frozen=True):
    path: str
    sha256: str
    size: int | None = None


class PackagedModel(msgspec.Struct, frozen=True):
    """Model files shipped inside a Python package."""

    description: str
    python_package: str
    module: str
    files: list[ModelFile]
    dimensions: int | None = None
    capabilities: frozenset[Capability] = frozenset({"generate"})

    def directory(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"the Python package {self.python_package} (module {self.module}) is not "
                f"installed; install it from the bundle's wheelhouse"
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def file_path(self, index: int = 0) -> Path:
        return self.directory() / self.files[index].path


class OllamaModel(msgspec.Struct, frozen=True):
    description: str
    ollama_model: str
    digest: str
    size: int | None = None
    capabilities: frozenset[Capability] = frozenset({"generate"})


class ChatModels(msgspec.Struct, frozen=True):
    embedded: PackagedModel
    production: OllamaModel


class Manifest(msgspec.Struct, frozen=True):
    chat: ChatModels
    embedding: PackagedModel


class Check(msgspec.Struct, frozen=True):
    """The outcome of checking one model file (or the Ollama model)."""

    model: str
    target: str
    ok: bool
    detail: str


def load_manifest(path: Path) -> Manifest:
    try:
        return msgspec.convert(tomllib.loads(path.read_text()), Manifest)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the model manifest {path} is missing; set APPLIANCE_MODELS_MANIFEST to its path"
        ) from None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_packaged(name: str, model: PackagedModel) -> list[Check]:
    try:
        directory = model.directory()
    except FileNotFoundError as exc:
        return [Check(name, model.python_package, False, str(exc))]
    checks = []
    for entry in model.files:
        path = directory / entry.path
        if not path.is_file():
            checks.append(Check(name, str(path), False, "missing"))
            continue
        actual = sha256_of(path)
        if actual != entry.sha256:
            checks.append(Check(name, str(path), False, f"sha256 {actual} does not match the pinned {entry.sha256}"))
        else:
            checks.append(Check(name, str(path), True, "sha256 matches"))
    return checks


def verify_ollama(model: OllamaModel, tags: list[dict] | None, url: str | None) -> Check:
    """Compare the pinned digest with an Ollama server's ``/api/tags`` answer."""
    name = "chat.production"
    if tags is None:
        return Check(name, model.ollama_model, True, "not checked: no Ollama server is configured")
    for entry in tags:
        if entry.get("name") == model.ollama_model or entry.get("model") == model.ollama_model:
            if entry.get("digest") == model.digest:
                return Check(name, model.ollama_model, True, f"digest matches on {url}")
            return Check(
                name,
                model.ollama_model,
                False,
                f"{url} serves digest {entry.get('digest')}, the manifest pins {model.digest}",
            )
    return Check(
        name,
        model.ollama_model,
        False,
        f"{url} does not have {model.ollama_model}; copy it into Ollama's model store from the bundle",
    )


def verify_files(manifest: Manifest) -> list[Check]:
    return verify_packaged("chat.embedded", manifest.chat.embedded) + verify_packaged("embedding", manifest.embedding)
