"""The appliance switches off every library's network use before importing it."""

from __future__ import annotations

import subprocess
import sys

from appliance import offline


def test_importing_the_appliance_sets_every_switch_before_anything_else():
    code = (
        "import os, sys\n"
        "os.environ['HF_HUB_OFFLINE'] = '0'\n"
        "os.environ['LANGSMITH_TRACING'] = 'true'\n"
        "import appliance\n"
        "from appliance import offline\n"
        "assert not offline.problems(), offline.problems()\n"
        "assert 'huggingface_hub' not in sys.modules and 'chromadb' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_switches_cover_the_known_callers_home():
    for name in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_DISABLE_TELEMETRY",
        "ORT_DISABLE_TELEMETRY",
        "LANGSMITH_TRACING",
        "OLLAMA_NO_CLOUD",
        "ANONYMIZED_TELEMETRY",
    ):
        assert name in offline.FORCED


def test_doctor_reports_a_healthy_embedded_appliance(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "doctor"],
        env={"APPLIANCE_DATA_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "ok   postgres" in result.stdout and "ok   model" in result.stdout


def test_doctor_says_what_to_fix_when_postgres_is_unreachable(tmp_path):
    env = {
        "APPLIANCE_DATA_DIR": str(tmp_path),
        "PATH": "",
        "APPLIANCE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "doctor"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "FAIL postgres" in result.stdout and "APPLIANCE_DATABASE_URL" in result.stdout
