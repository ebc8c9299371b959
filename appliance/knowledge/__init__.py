"""Knowledge bases: turning an organisation's files into cited passages.

extract (file → sections) → chunking (sections → chunks) → embeddings (chunks →
vectors) → ingest (one document in, atomically) and retrieval (hybrid search).
"""
