"""Switches that keep every library from reaching the internet.

Imported by ``appliance/__init__.py`` before anything else, so the switches
are in the environment before huggingface_hub, transformers, onnxruntime,
chromadb or langsmith read them at import time.
"""

from __future__ import annotations

import os

# Forced: a user's shell must not be able to turn these back on by accident.
FORCED: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "OLLAMA_NO_CLOUD": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply() -> None:
    os.environ.update(FORCED)


def problems() -> list[str]:
    """Switches that are not in force in this process (for ``appliance doctor``)."""
    return [
        f"{name} is {os.environ.get(name)!r}, expected {value!r}"
        for name, value in FORCED.items()
        if os.environ.get(name) != value
    ]


apply()
