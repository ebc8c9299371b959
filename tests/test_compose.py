"""compose/: valid against the Compose Specification's JSON schema (the copy
check-jsonschema ships; no Docker engine runs here), and in step with the
appliance's own settings."""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from appliance.settings import load_settings

COMPOSE = Path(__file__).resolve().parents[1] / "compose"
BACKENDS = ("postgres", "chroma", "ollama")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def problems(validator: jsonschema.Validator, document: dict) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document))


def test_the_compose_file_follows_the_compose_specification(compose, validator):
    assert problems(validator, compose) == []


def test_the_schema_check_catches_a_broken_file(compose, validator):
    broken = copy.deepcopy(compose)
    broken["services"]["appliance"]["ports"] = {"8000": 8000}
    broken["services"]["chroma"]["restart_policy"] = "always"
    found = problems(validator, broken)
    assert any(p.startswith("services/appliance/ports") for p in found)
    assert any("restart_policy" in p for p in found)


def test_the_appliance_service_is_configured_with_real_settings(compose):
    environment = compose["services"]["appliance"]["environment"]
    settings = load_settings(env={k: str(v) for k, v in environment.items() if k.startswith("APPLIANCE_")})
    assert settings.profile == "production"
    assert settings.chroma_url == "http://chroma:8000" and settings.ollama_url == "http://ollama:11434"
    assert settings.database_url.endswith("@postgres:5432/appliance")


def test_only_the_appliance_is_published_and_the_backends_have_no_way_out(compose):
    services, networks = compose["services"], compose["networks"]
    assert networks["backend"]["internal"] is True
    for name in BACKENDS:
        assert services[name]["networks"] == ["backend"], name
        assert "ports" not in services[name], name
    assert services["appliance"]["ports"] == ["8000:8000"]


def test_ollama_is_kept_from_calling_home(compose):
    assert compose["services"]["ollama"]["environment"]["OLLAMA_NO_CLOUD"] == "1"


def test_the_image_installs_cpu_torch_first_then_the_pinned_versions():
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    torch = dockerfile.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch < dockerfile.index("pip install -c requirements/constraints.txt .")
