"""Settings: read from APPLIANCE_* variables and a TOML file, validated at
start-up with errors that name the key the user wrote."""

from __future__ import annotations

import pytest

from appliance.settings import SettingsError, load_settings


def test_nothing_configured_means_the_embedded_profile():
    settings = load_settings(env={})
    assert settings.profile == "embedded" and settings.provider == "llamacpp"
    assert settings.database_url is None and settings.chroma_url is None
    assert not settings.logs_as_json


def test_environment_overrides_the_file(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\ncontext_token_budget = 2048\n')
    settings = load_settings(env={"APPLIANCE_CONFIG": str(config), "APPLIANCE_PORT": "9100"})
    assert (settings.port, settings.host, settings.context_token_budget) == (9100, "0.0.0.0", 2048)


def test_production_profile_needs_its_services():
    env = {
        "APPLIANCE_PROFILE": "production",
        "APPLIANCE_DATABASE_URL": "postgresql://appliance@db.lan/appliance",
        "APPLIANCE_CHROMA_URL": "http://vectors.lan:8001",
        "APPLIANCE_OLLAMA_URL": "http://llm.lan:11434",
        "APPLIANCE_OLLAMA_MODEL": "qwen2.5:3b",
    }
    settings = load_settings(env=env)
    assert settings.provider == "ollama" and settings.logs_as_json
    for missing in ("APPLIANCE_DATABASE_URL", "APPLIANCE_CHROMA_URL", "APPLIANCE_OLLAMA_URL", "APPLIANCE_OLLAMA_MODEL"):
        with pytest.raises(SettingsError, match=missing):
            load_settings(env={k: v for k, v in env.items() if k != missing})


def test_several_ollama_servers_stand_for_one():
    env = {"APPLIANCE_LLM_PROVIDER": "ollama", "APPLIANCE_OLLAMA_MODEL": "qwen2.5:3b",
           "APPLIANCE_OLLAMA_URLS": "http://llm-1.lan:11434/, http://llm-2.lan:11434"}  # fmt: skip
    assert load_settings(env=env).ollama_servers == ["http://llm-1.lan:11434", "http://llm-2.lan:11434"]
    with pytest.raises(SettingsError, match="APPLIANCE_OLLAMA_URLS must be an http"):
        load_settings(env=env | {"APPLIANCE_OLLAMA_URLS": "http://llm-1.lan:11434,llm-2.lan"})
    with pytest.raises(SettingsError, match="APPLIANCE_OLLAMA_URLS names no URL"):
        load_settings(env=env | {"APPLIANCE_OLLAMA_URLS": " , "})
    single = {k: v for k, v in env.items() if k != "APPLIANCE_OLLAMA_URLS"} | {
        "APPLIANCE_OLLAMA_URL": "http://llm.lan:1"
    }
    assert load_settings(env=single).ollama_servers == ["http://llm.lan:1"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APPLIANCE_PORT": "eighty"}, r"APPLIANCE_PORT: Expected `int`.*\(expected int >= 1 and <= 65535\)"),
        ({"APPLIANCE_PORT": "70000"}, r"APPLIANCE_PORT: .*<= 65535"),
        ({"APPLIANCE_PROFILE": "prod"}, r"APPLIANCE_PROFILE: .*'embedded', 'production'"),
        ({"APPLIANCE_FOLD_TARGET": "1.5"}, r"APPLIANCE_FOLD_TARGET"),
        (
            {"APPLIANCE_DATABSE_URL": "postgresql://x"},
            r"APPLIANCE_DATABSE_URL is not a setting.*APPLIANCE_DATABASE_URL",
        ),
        ({"APPLIANCE_DATABASE_URL": "mysql://x"}, r"APPLIANCE_DATABASE_URL must be a postgresql:// URL"),
        ({"APPLIANCE_CHROMA_URL": "vectors.lan:8001"}, r"APPLIANCE_CHROMA_URL must be an http:// or https:// URL"),
        ({"APPLIANCE_DB_POOL_MIN_SIZE": "30"}, r"db_pool_min_size \(30\) must not exceed"),
    ],
)
def test_a_bad_value_names_the_key_and_what_it_expects(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_a_bad_file_names_the_file_and_key(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text('max_answer_tokens = "lots"\n')
    with pytest.raises(SettingsError, match=rf"max_answer_tokens in {config}"):
        load_settings(env={"APPLIANCE_CONFIG": str(config)})
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="prot in .* is not a setting"):
        load_settings(env={"APPLIANCE_CONFIG": str(config)})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(env={"APPLIANCE_CONFIG": str(tmp_path / "missing.toml")})
