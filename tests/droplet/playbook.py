"""Run the bundle's playbook against droplets, as an admin would: from the
unpacked bundle's ansible/ folder, with an inventory of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.droplet.machines import LAN, Droplet, ssh_options

_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.M)


@dataclass
class PlaybookRun:
    returncode: int
    seconds: float
    output: str

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m["host"]: {k: int(v) for k, v in (pair.split("=") for pair in m["counts"].split())}
            for m in _RECAP.finditer(self.output)
        }

    def assert_ok(self, machines: Iterable[Droplet] = ()) -> None:
        if self.returncode != 0:
            raise AssertionError(
                f"ansible-playbook failed (exit {self.returncode}):\n{self.output[-6000:]}\n{journals(machines)}"
            )


def journals(machines: Iterable[Droplet]) -> str:
    """Each machine's failed units and latest warnings: what a failed run's
    message needs, since the machines are gone by the time anyone reads it."""
    report = []
    for machine in machines:
        try:
            seen = machine.ssh(
                "systemctl --failed --no-legend --plain; journalctl -b -p warning --no-pager -n 40",
                check=False, timeout=60,
            )  # fmt: skip
            said = seen.stdout + seen.stderr
        except subprocess.TimeoutExpired:
            said = "(no answer over SSH within 60 s)\n"
        report.append(f"--- {machine.name}: failed units, then the journal's warnings\n{said}")
    return "\n".join(report)


def write_inventory(folder: Path, groups: dict[str, list[Droplet]], ssh_key: Path, **variables) -> Path:
    hosts = {d.name: {"ansible_host": d.address} for members in groups.values() for d in members}
    inventory = {
        "all": {
            "hosts": hosts,
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(ssh_key),
                "ansible_ssh_common_args": " ".join(ssh_options(ssh_key)[2:]),
                **variables,
            },
            "children": {group: {"hosts": {d.name: None for d in members}} for group, members in groups.items()},
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def run_playbook(bundle: Path, inventory: Path, log: Path) -> PlaybookRun:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), "site.yml"],
            cwd=bundle / "ansible", env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    return PlaybookRun(result.returncode, time.monotonic() - started, log.read_text())


def install(
    bundle: Path, workdir: Path, groups: dict[str, list[Droplet]], ssh_key: Path, **variables
) -> tuple[Path, PlaybookRun]:
    """The first run of the playbook on fresh droplets, on the test LAN, with the
    embedded model (no Ollama binary can be had here)."""
    variables = {"appliance_lan_networks": [LAN], "appliance_llm_provider": "llamacpp", **variables}
    inventory = write_inventory(workdir / "inventory", groups, ssh_key, **variables)
    first = run_playbook(bundle, inventory, workdir / "first-run.log")
    machines = {d.name: d for members in groups.values() for d in members}
    first.assert_ok(machines.values())
    print(f"\n{len(machines)} host(s): first playbook run {first.seconds:.0f} s")
    return inventory, first
