"""The droplet suite's machinery: the bundle (built once, unpacked as an admin
would), a plain Debian 12 image, the LAN bridge and an SSH key.

It needs root, debootstrap, systemd-nspawn and iproute2. Without them it is
skipped; with TEST_REQUIRE_DROPLET=1 (set by .ci/run) it fails instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.droplet.machines import Lan, base_image, missing_tools

CACHE = Path(os.environ.get("DROPLET_CACHE", "~/.cache/appliance-droplet")).expanduser()
# A module's first test also pays for its fixtures: building the bundle and the
# image, booting the machines, and the playbook's first run (three hosts share
# two cores). The suite-wide 600 s would cut that short.
TIMEOUT_S = 2400


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(TIMEOUT_S))


@pytest.fixture(scope="session")
def droplet_host() -> None:
    problems = [f"{tool} is not installed" for tool in missing_tools()]
    if os.geteuid() != 0:
        problems.append("it must run as root (debootstrap, network namespaces, systemd-nspawn)")
    if problems:
        message = "droplet suite: " + "; ".join(problems) + " (apt-get install debootstrap systemd-container)"
        if os.environ.get("TEST_REQUIRE_DROPLET") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def bundle(droplet_host, tmp_path_factory) -> Path:
    """The unpacked bundle: TEST_BUNDLE names an archive, else one is built now."""
    archive = os.environ.get("TEST_BUNDLE")
    if not archive:
        out = tmp_path_factory.mktemp("dist")
        subprocess.run(
            [str(Path(sys.executable).with_name("appliance")), "bundle", "build", "--output", str(out)],
            check=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        (archive,) = out.glob("*.tar")
    unpacked = tmp_path_factory.mktemp("bundle")
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="tar")
    (folder,) = unpacked.iterdir()
    return folder


@pytest.fixture(scope="session")
def image(droplet_host) -> Path:
    return base_image(CACHE)


@pytest.fixture(scope="session")
def lan(droplet_host) -> Iterator[Lan]:
    network = Lan()
    yield network
    network.close()


@pytest.fixture(scope="session")
def ssh_key(droplet_host, tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key
