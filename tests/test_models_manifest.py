"""The model manifest pins every shipped model file by sha256."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import msgspec

from appliance.manifest import load_manifest, verify_files, verify_ollama
from appliance.settings import load_settings
from tests.support.fake_ollama import DIGEST, MODEL

MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.toml"


def test_the_installed_model_files_match_the_manifest():
    checks = verify_files(load_manifest(MANIFEST))
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert {c.model for c in checks} == {"chat.embedded", "embedding"}


def test_a_changed_model_file_is_caught(tmp_path, monkeypatch):
    manifest = load_manifest(MANIFEST)
    # A copy of the embedding package with one byte changed in a config file.
    original = manifest.embedding.directory()
    copy = tmp_path / "tampered_minilm"
    shutil.copytree(original, copy)
    (copy / "__init__.py").write_text("")
    config = copy / "model" / "config.json"
    config.write_bytes(config.read_bytes() + b" ")
    monkeypatch.syspath_prepend(str(tmp_path))
    tampered = msgspec.structs.replace(manifest.embedding, module="tampered_minilm")
    checks = verify_files(msgspec.structs.replace(manifest, embedding=tampered))
    bad = [c for c in checks if not c.ok]
    assert len(bad) == 1 and bad[0].target.endswith("config.json") and "does not match" in bad[0].detail


def test_the_ollama_digest_is_compared_with_the_server():
    pinned = load_manifest(MANIFEST).chat.production
    assert pinned.ollama_model == MODEL and pinned.digest == DIGEST
    assert verify_ollama(pinned, [{"name": MODEL, "digest": DIGEST}], "http://llm").ok
    other = verify_ollama(pinned, [{"name": MODEL, "digest": "0" * 64}], "http://llm")
    assert not other.ok and "pins" in other.detail
    missing = verify_ollama(pinned, [], "http://llm")
    assert not missing.ok and "does not have" in missing.detail


def test_models_verify_command_checks_a_running_ollama(tmp_path):
    from tests.support.fake_ollama import FakeOllama

    with FakeOllama() as fake:
        env = {
            "APPLIANCE_LLM_PROVIDER": "ollama",
            "APPLIANCE_OLLAMA_URL": fake.url,
            "APPLIANCE_OLLAMA_MODEL": MODEL,
            "APPLIANCE_DATA_DIR": str(tmp_path),
            "PATH": "",
        }
        load_settings(env=env)  # the same settings the command will read
        result = subprocess.run(
            [sys.executable, "-m", "appliance.cli.main", "models", "verify"], env=env, capture_output=True, text=True
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sha256 matches" in result.stdout and f"digest matches on {fake.url}" in result.stdout


def test_capabilities_come_from_the_manifest_entry_of_the_configured_model():
    import pytest

    from appliance.llm.provider import capabilities_of
    from appliance.settings import SettingsError

    assert capabilities_of(load_settings(env={})) == {"generate"}  # SmolLM2: it writes, the agent decides
    ollama = {"APPLIANCE_LLM_PROVIDER": "ollama", "APPLIANCE_OLLAMA_URL": "http://127.0.0.1:1"}
    pinned = load_settings(env=ollama | {"APPLIANCE_OLLAMA_MODEL": MODEL})
    assert capabilities_of(pinned) == {"decide", "rewrite", "generate", "tools"}
    # A model the manifest does not pin is trusted only to write, unless the administrator says more.
    other = ollama | {"APPLIANCE_OLLAMA_MODEL": "llama3.2:1b"}
    assert capabilities_of(load_settings(env=other)) == {"generate"}
    trusted = load_settings(env=other | {"APPLIANCE_MODEL_CAPABILITIES": "generate, decide"})
    assert capabilities_of(trusted) == {"generate", "decide"}
    with pytest.raises(SettingsError, match="fly unknown; choose from decide, rewrite, generate, tools"):
        load_settings(env={"APPLIANCE_MODEL_CAPABILITIES": "decide,fly"})
