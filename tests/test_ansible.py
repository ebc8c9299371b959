"""The Ansible tree and the bundle's checks, without a droplet: ansible-lint's
production profile, the roles' layout and variables, the settings template,
and the checksum module that refuses a changed bundle."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
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
    own = {p.stem for p in ANSIBLE.glob("roles/*/library/*.py")}  # a role's own modules have no collection
    assert own == {"bundle_checksums", "bundle_pack"}
    for tasks in ANSIBLE.glob("roles/*/*/main.yml"):
        for task in _tasks(yaml.safe_load(tasks.read_text()) or []):
            modules = [k for k in task if "." in k or k in own]
            assert modules, f"{tasks}: {task['name']!r} names no fully qualified module"


def _tasks(items: list) -> list[dict]:
    """Named tasks, with those inside blocks (a block itself runs no module)."""
    found = []
    for item in items:
        if isinstance(item, dict) and "block" in item:
            found += _tasks(item["block"] + item.get("rescue", []) + item.get("always", []))
        elif isinstance(item, dict) and "name" in item:
            found.append(item)
    return found


def test_the_settings_template_names_only_real_settings():
    template = (ANSIBLE / "roles/appliance/templates/appliance.toml.j2").read_text()
    keys = set(re.findall(r"^(\w+) =", template, flags=re.M))
    assert keys and keys <= set(field_names()), sorted(keys - set(field_names()))


def rendered_settings(tmp_path: Path, llm_hosts: dict[str, str]) -> str:
    """appliance.toml as the role writes it for an app host, in a multi-host inventory."""
    inventory = {"all": {
        "vars": {"appliance_llm_provider": "ollama", "appliance_lan_networks": ["10.20.0.0/24"]},
        "children": {
            "appliance_app": {"hosts": {"app1": {"ansible_host": "10.20.0.11"}}},
            "appliance_db": {"hosts": {"db1": {"ansible_host": "10.20.0.21"}}},
            "appliance_vectors": {"hosts": {"vectors1": {"ansible_host": "10.20.0.22"}}},
            "appliance_llm": {"hosts": {name: {"ansible_host": address} for name, address in llm_hosts.items()}},
        },
    }}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    # The role's defaults beneath the inventory's wiring (group_vars/all wins, as in a play).
    wired = yaml.safe_load((ANSIBLE / "group_vars/all/main.yml").read_text())
    defaults = yaml.safe_load((ANSIBLE / "roles/appliance/defaults/main.yml").read_text())
    beneath = {k: v for k, v in defaults.items() if k not in wired and k not in inventory["all"]["vars"]}
    (tmp_path / "defaults.json").write_text(json.dumps(beneath))
    template = "{{ lookup('ansible.builtin.template', 'roles/appliance/templates/appliance.toml.j2') }}"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible")), "-i", str(tmp_path / "hosts.yml"), "app1",
         "-m", "ansible.builtin.debug", "-a", f"msg={template}", "-e", f"@{tmp_path / 'defaults.json'}",
         "-e", "appliance_db_password=x", "-o"],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])["msg"]


def test_every_llm_host_serves_the_appliance(tmp_path):
    several = rendered_settings(tmp_path, {"llm1": "10.20.0.31", "llm2": "10.20.0.32"})
    assert 'ollama_urls = "http://10.20.0.31:11434,http://10.20.0.32:11434"' in several
    one = rendered_settings(tmp_path, {"llm1": "10.20.0.31"})
    assert 'ollama_url = "http://10.20.0.31:11434"' in one and "ollama_urls" not in one


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


def run_module(name: str, arguments: dict, tmp_path: Path) -> dict:
    """Run one of the bundle role's modules as Ansible does (a separate Python,
    its arguments in a file): importing ansible.module_utils here would patch
    this process's sys.intern."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
    module = ANSIBLE / f"roles/bundle/library/{name}.py"
    done = subprocess.run([sys.executable, str(module), str(args)], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)


def checksum_module(path: Path, tmp_path: Path) -> dict:
    return run_module("bundle_checksums", {"path": str(path)}, tmp_path)


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


def small_bundle(root: Path) -> Path:
    (root / "wheels").mkdir(parents=True)
    (root / "wheels/a-1.0-py3-none-any.whl").write_bytes(b"wheel a")
    (root / "wheels/b-2.0-py3-none-any.whl").write_bytes(b"wheel b")
    (root / "ollama/bin").mkdir(parents=True)
    (root / "ollama/bin/ollama").write_bytes(b"#!/bin/sh\n")
    (root / "ollama/bin/ollama").chmod(0o755)
    write_sums(root)
    return root


def test_the_pack_module_makes_one_reproducible_archive_per_part_and_reuses_it(tmp_path):
    bundle, cache = small_bundle(tmp_path / "bundle"), tmp_path / "cache"
    arguments = {"path": str(bundle), "parts": ["wheels", "ollama"], "dest": str(cache)}
    first = run_module("bundle_pack", arguments, tmp_path)
    assert first["changed"] is True
    wheels = Path(first["archives"]["wheels"])
    with tarfile.open(wheels) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["wheels", "wheels/a-1.0-py3-none-any.whl", "wheels/b-2.0-py3-none-any.whl"]
        assert tar.extractfile("wheels/b-2.0-py3-none-any.whl").read() == b"wheel b"
        assert {(m.uid, m.gid, m.mode) for m in members.values() if m.isfile()} == {(0, 0, 0o644)}
    with tarfile.open(first["archives"]["ollama"]) as tar:
        assert tar.getmember("ollama/bin/ollama").mode == 0o755

    again = run_module("bundle_pack", arguments, tmp_path)
    assert again == {**first, "changed": False}

    wheels_bytes = wheels.read_bytes()
    wheels.unlink()  # rebuilt from the same files: the very same bytes
    assert run_module("bundle_pack", arguments, tmp_path)["changed"] is True
    assert wheels.read_bytes() == wheels_bytes


def test_the_pack_module_replaces_the_archive_of_a_part_that_changed(tmp_path):
    bundle, cache = small_bundle(tmp_path / "bundle"), tmp_path / "cache"
    arguments = {"path": str(bundle), "parts": ["wheels"], "dest": str(cache)}
    before = Path(run_module("bundle_pack", arguments, tmp_path)["archives"]["wheels"])
    (bundle / "wheels/c-3.0-py3-none-any.whl").write_bytes(b"wheel c")
    write_sums(bundle)
    after = run_module("bundle_pack", arguments, tmp_path)
    assert after["changed"] is True and Path(after["archives"]["wheels"]) != before
    assert sorted(p.name for p in cache.iterdir()) == [Path(after["archives"]["wheels"]).name]
    with tarfile.open(after["archives"]["wheels"]) as tar:
        assert "wheels/c-3.0-py3-none-any.whl" in tar.getnames()


def test_the_pack_module_refuses_a_part_the_bundle_does_not_have(tmp_path):
    bundle = small_bundle(tmp_path / "bundle")
    refused = run_module("bundle_pack", {"path": str(bundle), "parts": ["debs"], "dest": str(tmp_path / "c")}, tmp_path)
    assert refused["failed"] is True
    assert refused["msg"] == f"cannot pack debs of the bundle at {bundle}: debs/ has no files in SHA256SUMS"
