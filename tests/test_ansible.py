"""The Ansible tree and the bundle's checks, without a droplet: ansible-lint's
production profile, the roles' layout and variables, the settings template,
and the checksum module that refuses a changed bundle."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.bundle.checksums import write_sums
from appliance.bundle.debian import BundleBuildError, role_packages
from appliance.bundle.wheels import pin_wheels
from appliance.settings import field_names

ANSIBLE = Path(__file__).resolve().parents[1] / "ansible"
ROLES = sorted(p.name for p in (ANSIBLE / "roles").iterdir())


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-lint")), "--offline", "--profile", "production", "--nocolor"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_ansible_lint_production_profile_passes():
    result = lint(ANSIBLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_ansible_lint_catches_a_task_that_breaks_the_rules(tmp_path):
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy)
    with (copy / "roles/base/tasks/main.yml").open("a") as tasks:
        tasks.write("\n- shell: echo not idempotent\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "no-changed-when" in result.stdout and "fqcn" in result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_the_standard_layout_and_documents_its_variables(role):
    folder = ANSIBLE / "roles" / role
    for part in ("defaults/main.yml", "tasks/main.yml", "meta/main.yml", "meta/argument_specs.yml"):
        assert (folder / part).is_file(), f"{role} lacks {part}"
    defaults = yaml.safe_load((folder / "defaults/main.yml").read_text())
    documented = yaml.safe_load((folder / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert all(name.startswith(f"{role}_") for name in defaults), f"{role}: every variable carries the role's prefix"
    assert set(defaults) <= set(documented), f"{role}: undocumented {sorted(set(defaults) - set(documented))}"
    for name, spec in documented.items():
        if name in defaults and "default" in spec:
            assert spec["default"] == defaults[name], f"{role}: {name}'s documented default differs"


def test_every_module_is_named_by_its_fully_qualified_name():
    for tasks in ANSIBLE.glob("roles/*/*/main.yml"):
        for task in yaml.safe_load(tasks.read_text()) or []:
            if not isinstance(task, dict) or "name" not in task:
                continue
            modules = [k for k in task if "." in k or k == "bundle_checksums"]
            assert modules, f"{tasks}: {task['name']!r} names no fully qualified module"


def test_the_settings_template_names_only_real_settings():
    template = (ANSIBLE / "roles/appliance/templates/appliance.toml.j2").read_text()
    keys = set(re.findall(r"^(\w+) =", template, flags=re.M))
    assert keys and keys <= set(field_names()), sorted(keys - set(field_names()))


def test_the_bundle_takes_its_debian_packages_from_the_roles():
    packages = role_packages(ANSIBLE)
    assert {"postgresql", "nftables", "python3-venv", "python3-apt", "libgomp1"} <= set(packages)


def test_the_bundle_refuses_to_guess_when_no_role_names_packages(tmp_path):
    (tmp_path / "roles/empty/defaults").mkdir(parents=True)
    (tmp_path / "roles/empty/defaults/main.yml").write_text("---\nempty_port: 1\n")
    with pytest.raises(BundleBuildError, match="no <role>_packages lists"):
        role_packages(tmp_path)


def test_the_wheelhouse_refuses_wheels_the_target_cannot_install(tmp_path):
    (tmp_path / "good-1.0-py3-none-any.whl").touch()
    (tmp_path / "native-2.0-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert pin_wheels(tmp_path) == {"good": "1.0", "native": "2.0"}
    assert (tmp_path / "requirements.txt").read_text() == "good==1.0\nnative==2.0\n"
    (tmp_path / "mac-1.0-cp311-cp311-macosx_11_0_arm64.whl").touch()
    with pytest.raises(BundleBuildError, match="mac-1.0-cp311-cp311-macosx_11_0_arm64.whl does not install"):
        pin_wheels(tmp_path)


def checksum_module(path: Path, tmp_path: Path) -> dict:
    """Run the module as Ansible does (a separate Python, its arguments in a file):
    importing ansible.module_utils here would patch this process's sys.intern."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": str(path)}}))
    module = ANSIBLE / "roles/bundle/library/bundle_checksums.py"
    done = subprocess.run([sys.executable, str(module), str(args)], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)


def test_the_checksum_module_names_each_changed_missing_or_unlisted_file(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "wheels/a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (bundle / "debs").mkdir()
    (bundle / "debs/b_1.0_amd64.deb").write_bytes(b"deb")
    (bundle / "manifest.json").write_text("{}")
    assert write_sums(bundle) == 3
    passed = checksum_module(bundle, tmp_path)
    assert not passed.get("failed") and passed["files"] == 3 and passed["changed"] is False

    (bundle / "wheels/a-1.0-py3-none-any.whl").write_bytes(b"wheel, changed")
    (bundle / "debs/b_1.0_amd64.deb").unlink()
    (bundle / "debs/c_1.0_amd64.deb").write_bytes(b"slipped in")
    refused = checksum_module(bundle, tmp_path)
    assert refused["failed"] is True
    assert refused["problems"] == [
        "debs/b_1.0_amd64.deb is missing",
        "wheels/a-1.0-py3-none-any.whl does not match its SHA256SUMS entry",
        "debs/c_1.0_amd64.deb is not in SHA256SUMS",
    ]
    assert refused["msg"].startswith(f"the bundle at {bundle} is damaged or was changed: debs/b_1.0_amd64.deb")


def test_the_checksum_module_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    refused = checksum_module(tmp_path, tmp_path)
    assert refused["failed"] is True
    assert refused["problems"] == [f"SHA256SUMS is missing: {tmp_path} is not an unpacked bundle"]
