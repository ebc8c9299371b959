"""ChromaDB: a server in production, an embedded PersistentClient otherwise.

The appliance always passes its own embeddings; Chroma's default embedding
function would try to download a model.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from appliance.settings import Settings


def open_chroma(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    path = settings.data_path / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
