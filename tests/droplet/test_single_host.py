"""The whole install on one air-gapped Debian 12 droplet: the bundle's playbook
over SSH, then the appliance answering from a document with a citation, a
second run that changes nothing, the egress policy, and a reboot that keeps
the conversation. The embedded model (llama.cpp, SmolLM2) answers: no Ollama
binary can be had here, and the ollama role says so and stops cleanly."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.droplet.client import ApplianceClient, local_ca, wait_ready
from tests.droplet.machines import HOST_ADDRESS, LAN, OUTSIDE_ADDRESS, Droplet, Lan, droplets
from tests.droplet.playbook import PlaybookRun, install, run_playbook

pytestmark = pytest.mark.slow

ADDRESS = "10.77.0.11"
DOCUMENT = (
    "# Rotterdam warehouse\n\n"
    "The Rotterdam warehouse stores 48000 pallets. Trucks leave for Antwerp every night at 22:00.\n"
)
QUESTION = "How many pallets does the Rotterdam warehouse store?"


def connect_from(droplet: Droplet, address: str, port: int, *, unit: str | None = None) -> str:
    """Open a TCP connection from the droplet; inside ``unit``'s cgroup when given,
    so the unit's own IPAddressDeny= applies. Returns 'connected' or the error."""
    script = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), 5).close(); print('connected')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    enter = ""
    if unit:
        cgroup = droplet.ssh(f"systemctl show -P ControlGroup {unit}").stdout.strip()
        # systemd's BPF filters hang on the cgroup v2 tree (under unified/ on a hybrid host).
        enter = f"d=/sys/fs/cgroup/unified; [ -d $d ] || d=/sys/fs/cgroup; echo $$ > $d{cgroup}/cgroup.procs && "
    return droplet.ssh(f"sh -c '{enter}exec python3 -c \"$0\"' {shlex.quote(script)}").stdout.strip()


@pytest.fixture(scope="module")
def site(bundle: Path, image: Path, lan: Lan, ssh_key: Path, tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("single")
    with droplets({"solo": ADDRESS}, image, workdir, ssh_key) as machines:
        solo = machines["solo"]
        before = {
            "outside": connect_from(solo, OUTSIDE_ADDRESS, lan.outside.port),
            "lan": connect_from(solo, HOST_ADDRESS, lan.inside.port),
        }
        inventory, first = install(
            bundle,
            workdir,
            {"appliance_app": [solo], "appliance_db": [solo], "appliance_vectors": [solo], "appliance_llm": [solo]},
            ssh_key,
            # SmolLM2 on two shared cores: short answers keep the suite's time down.
            appliance_settings={"max_answer_tokens": 48, "worker_slots": 4},
        )
        key = solo.ssh("cat /root/appliance-admin-key").stdout.strip()
        yield {"droplet": solo, "inventory": inventory, "first": first, "before": before, "key": key,
               "workdir": workdir, "lan": lan}  # fmt: skip


@pytest.fixture(scope="module")
def client(site) -> Iterator[ApplianceClient]:
    with ApplianceClient(f"https://{ADDRESS}", site["key"], local_ca(site["inventory"])) as api:
        yield api


def test_every_service_is_active_and_enabled(site):
    solo: Droplet = site["droplet"]
    units = ["postgresql", "chromadb", "appliance", "nftables", "appliance-pg-dump.timer"]
    assert solo.ssh(f"systemctl is-active {' '.join(units)}").stdout.split() == ["active"] * len(units)
    assert solo.ssh(f"systemctl is-enabled {' '.join(units)}").stdout.split() == ["enabled"] * len(units)
    # Backends listen on loopback only; the appliance on the LAN, HTTPS and the redirect.
    listening = solo.ssh("ss -Hltn").stdout
    assert "127.0.0.1:5432" in listening and "127.0.0.1:8001" in listening
    assert "0.0.0.0:443" in listening and "0.0.0.0:80" in listening
    assert f"{ADDRESS}:5432" not in listening and "0.0.0.0:8001" not in listening


def test_https_is_verified_against_the_local_ca_and_plain_http_only_redirects(site, client):
    assert client.get("/healthz").status_code == 200  # the client verifies the certificate
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{ADDRESS}/healthz", trust_env=False)  # a client that does not trust the CA
    plain = httpx.get(f"http://{ADDRESS}/threads/search?limit=1", headers={"x-api-key": site["key"]}, trust_env=False)
    assert plain.status_code == 308 and plain.headers["location"] == f"https://{ADDRESS}/threads/search?limit=1"
    # The unit keeps one capability, to bind ports 80 and 443.
    caps = site["droplet"].ssh("systemctl show -P CapabilityBoundingSet -P AmbientCapabilities appliance").stdout
    assert caps.split() == ["cap_net_bind_service", "cap_net_bind_service"], caps


def test_the_first_admin_key_is_readable_by_root_only(site):
    stat = site["droplet"].ssh("stat -c '%U %a' /root/appliance-admin-key").stdout.split()
    assert stat == ["root", "600"] and len(site["key"]) > 20


def test_readyz_reports_every_dependency_ready(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["degraded"] is False, ready.text


def test_a_question_about_an_ingested_document_is_answered_with_a_citation(site, client):
    kb_id = client.create_knowledge_base("warehouses", "rotterdam.md", DOCUMENT.encode())
    thread_id = client.create_thread(knowledge_bases=[kb_id])
    values = client.ask(thread_id, QUESTION)
    answer = values["messages"][-1]
    assert answer["type"] == "ai" and answer["content"].strip()
    assert values["citations"], f"no citation in {answer['content']!r} (retrievals: {values.get('retrievals')})"
    assert {c["source"] for c in values["citations"]} == {"rotterdam.md"}
    site["thread_id"], site["messages"] = thread_id, values["messages"]


def test_a_second_run_changes_nothing(site, bundle):
    second = run_playbook(bundle, site["inventory"], site["workdir"] / "second-run.log")
    second.assert_ok([site["droplet"]])
    print(f"\nsingle host: second playbook run {second.seconds:.0f} s")
    assert second.recap["solo"]["changed"] == 0, _changed_tasks(second)


def test_the_ollama_role_renders_its_unit_and_stops_without_a_binary(site):
    solo: Droplet = site["droplet"]
    assert "Ollama skipped on solo: the bundle has no ollama/bin/ollama" in site["first"].output
    env = solo.ssh("cat /etc/ollama/ollama.env").stdout
    assert "OLLAMA_NO_CLOUD=1" in env and "OLLAMA_HOST=127.0.0.1:11434" in env
    unit = solo.ssh("systemctl cat ollama").stdout
    assert "IPAddressDeny=any" in unit and "EnvironmentFile=/etc/ollama/ollama.env" in unit
    assert solo.ssh("systemctl is-enabled ollama", check=False).stdout.strip() == "disabled"


def test_the_appliance_unit_cannot_reach_beyond_loopback_and_the_lan(site):
    solo: Droplet = site["droplet"]
    lan: Lan = site["lan"]
    # Before the playbook the address outside the LAN answered: the route is there.
    assert site["before"] == {"outside": "connected", "lan": "connected"}
    # Now, from inside the appliance's unit: the LAN yes, the outside no.
    assert connect_from(solo, HOST_ADDRESS, lan.inside.port, unit="appliance") == "connected"
    refused = connect_from(solo, OUTSIDE_ADDRESS, lan.outside.port, unit="appliance")
    assert refused.startswith(("PermissionError", "TimeoutError", "ConnectionRefusedError", "OSError")), refused
    # The unit's own filter holds even without nftables (the host's policy is the second wall).
    solo.ssh("systemctl stop nftables && nft flush ruleset")
    try:
        assert connect_from(solo, OUTSIDE_ADDRESS, lan.outside.port) == "connected"  # root, unfiltered: it leaves
        assert connect_from(solo, OUTSIDE_ADDRESS, lan.outside.port, unit="appliance") != "connected"
    finally:
        solo.ssh("systemctl start nftables")
    # And with nftables back, even root cannot leave the LAN.
    assert connect_from(solo, OUTSIDE_ADDRESS, lan.outside.port) != "connected"
    unit = solo.ssh("systemctl show -p IPAddressDeny -p IPAddressAllow -p NoNewPrivileges -p ProtectSystem "
                    "-p PrivateTmp -p Restart appliance").stdout  # fmt: skip
    assert "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit and "PrivateTmp=yes" in unit
    assert "Restart=on-failure" in unit
    # The LAN is the inventory's, not a default: no other private range is let through.
    allowed = unit.split("IPAddressAllow=", 1)[1].split("\n", 1)[0].split()
    assert set(allowed) == {"127.0.0.0/8", "::1/128", LAN}
    lan_set = solo.ssh("nft list set inet appliance lan4").stdout
    assert LAN in lan_set and "192.168.0.0/16" not in lan_set


def test_the_conversation_survives_a_reboot(site, client):
    solo: Droplet = site["droplet"]
    solo.reboot()
    wait_ready(client)
    state = client.get(f"/threads/{site['thread_id']}/state").json()
    assert state["values"]["messages"] == site["messages"]
    values = client.ask(site["thread_id"], "Thank you. When do the trucks leave for Antwerp?")
    assert len(values["messages"]) == len(site["messages"]) + 2


def test_a_bundle_with_a_changed_file_is_refused_naming_the_file(site, bundle, tmp_path):
    manifest = bundle / "models" / "manifest.toml"
    original = manifest.read_bytes()
    stray = bundle / "wheels" / "extra-0.1-py3-none-any.whl"
    try:
        manifest.write_bytes(original + b"\n# changed\n")
        shutil.copy(bundle / "manifest.json", stray)
        refused = run_playbook(bundle, site["inventory"], tmp_path / "tampered.log")
    finally:
        manifest.write_bytes(original)
        stray.unlink()
    assert refused.returncode != 0
    assert "models/manifest.toml does not match its SHA256SUMS entry" in refused.output
    assert "wheels/extra-0.1-py3-none-any.whl is not in SHA256SUMS" in refused.output
    assert refused.recap["solo"]["changed"] == 0


def _changed_tasks(run: PlaybookRun) -> str:
    lines = run.output.splitlines()
    return "\n".join(f"{lines[i - 1]} {line}" for i, line in enumerate(lines) if line.startswith("changed:"))
