"""The same playbook across three droplets: two app hosts and one host with
PostgreSQL and Chroma. A conversation started through one app host goes on
through the other, over HTTPS; the data host's backends answer the app hosts
only (a LAN machine that is not one, the controller, is refused), and the app
hosts reach PostgreSQL over TLS only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.droplet.client import ApplianceClient, local_ca
from tests.droplet.machines import Lan, droplets
from tests.droplet.playbook import install, run_playbook

pytestmark = pytest.mark.slow

HOSTS = {"app1": "10.77.0.21", "app2": "10.77.0.22", "data": "10.77.0.23"}
DOCUMENT = b"# Night shipments\n\nTrucks leave the Rotterdam warehouse for Antwerp every night at 22:00.\n"


@pytest.fixture(scope="module")
def site(bundle: Path, image: Path, lan: Lan, ssh_key: Path, tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("multi")
    with droplets(HOSTS, image, workdir, ssh_key) as machines:
        apps, data = [machines["app1"], machines["app2"]], machines["data"]
        inventory, _ = install(
            bundle,
            workdir,
            {"appliance_app": apps, "appliance_db": [data], "appliance_vectors": [data], "appliance_llm": []},
            ssh_key,
            appliance_settings={"max_answer_tokens": 48, "worker_slots": 2},
        )
        key = machines["app1"].ssh("cat /root/appliance-admin-key").stdout.strip()
        yield {"machines": machines, "inventory": inventory, "key": key, "workdir": workdir}


def test_each_host_runs_its_own_services_and_backends_listen_on_the_private_address(site):
    machines = site["machines"]
    assert machines["data"].ssh("systemctl is-active postgresql chromadb").stdout.split() == ["active"] * 2
    for app in ("app1", "app2"):
        assert machines[app].ssh("systemctl is-active appliance").stdout.strip() == "active"
        assert (
            machines[app].ssh("systemctl is-active postgresql chromadb", check=False).stdout.split() == ["inactive"] * 2
        )
    listening = machines["data"].ssh("ss -Hltn").stdout
    assert f"{HOSTS['data']}:5432" in listening and f"{HOSTS['data']}:8001" in listening
    assert "0.0.0.0:5432" not in listening and "0.0.0.0:8001" not in listening
    # One first admin key, on one host.
    assert machines["app2"].ssh("test -e /root/appliance-admin-key", check=False).returncode == 1


def test_a_conversation_started_on_one_app_host_continues_on_the_other(site):
    ca = local_ca(site["inventory"])
    with (
        ApplianceClient(f"https://{HOSTS['app1']}", site["key"], ca) as one,
        ApplianceClient(f"https://{HOSTS['app2']}", site["key"], ca) as two,
    ):
        kb_id = one.create_knowledge_base("shipping", "night.md", DOCUMENT)
        thread_id = one.create_thread(knowledge_bases=[kb_id])
        first = one.ask(thread_id, "When do trucks leave the Rotterdam warehouse for Antwerp?")
        assert first["citations"] and first["citations"][0]["source"] == "night.md"

        second = two.ask(thread_id, "And where do they go?")
        assert second["messages"][: len(first["messages"])] == first["messages"]
        assert len(second["messages"]) == len(first["messages"]) + 2
        assert one.get(f"/threads/{thread_id}/state").json()["values"]["messages"] == second["messages"]


def test_the_backends_answer_the_app_hosts_and_refuse_the_rest_of_the_lan(site):
    machines = site["machines"]
    password = (site["inventory"].parent / "credentials" / "postgresql-appliance").read_text().split()[0]
    # The controller is on the LAN but is not an app host: refused at the door, with the password.
    before = _refused_count(machines["data"])
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(f"postgresql://appliance:{password}@{HOSTS['data']}:5432/appliance", connect_timeout=5)
    with pytest.raises(httpx.ConnectError, match="refused"):
        httpx.get(f"http://{HOSTS['data']}:8001/api/v2/heartbeat", timeout=5, trust_env=False)
    # Ollama's port too: no Ollama binary can be had here, so nothing listens there,
    # and the firewall rule's counter shows it was the rule that refused all three.
    with pytest.raises(httpx.ConnectError, match="refused"):
        httpx.get(f"http://{HOSTS['data']}:11434/api/tags", timeout=5, trust_env=False)
    assert _refused_count(machines["data"]) >= before + 3

    # An app host gets in: PostgreSQL with the same password, over TLS only, and Chroma.
    app1 = machines["app1"]
    psql = f"PGPASSWORD={password} psql -h {HOSTS['data']} -U appliance -d appliance -XtA"
    assert app1.ssh(f"PGSSLMODE=require {psql} -c 'SELECT 1'").stdout.strip() == "1"
    plain = app1.ssh(f"PGSSLMODE=disable {psql} -c 'SELECT 1'", check=False)
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    heartbeat = app1.ssh(
        'python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://{HOSTS['data']}:8001/api/v2/heartbeat', timeout=5).status)\""
    )
    assert heartbeat.stdout.strip() == "200"
    # And each backend unit exchanges packets with loopback and the app hosts only
    # (Chroma also with its own host, whose address it listens on).
    apps = {"127.0.0.0/8", "::1/128", HOSTS["app1"] + "/32", HOSTS["app2"] + "/32"}
    for unit, peers in (("chromadb", apps | {HOSTS["data"] + "/32"}), ("postgresql@15-main", apps)):
        allowed = machines["data"].ssh(f"systemctl show -P IPAddressAllow {unit}").stdout.split()
        assert set(allowed) == peers, (unit, allowed)


def test_the_app_hosts_talk_to_postgresql_over_verified_tls(site):
    machines = site["machines"]
    for app in ("app1", "app2"):
        assert "sslmode=verify-full" in machines[app].ssh("cat /etc/appliance/appliance.toml").stdout
    # PostgreSQL's own view of the appliance's connections: every one from an app host is TLS.
    seen = (
        machines["data"]
        .ssh(
            'runuser -u postgres -- psql -XtA -c "SELECT host(a.client_addr), s.ssl, s.version FROM pg_stat_ssl s '
            "JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'appliance' AND a.client_addr IS NOT NULL\""
        )
        .stdout.split()
    )
    rows = [row.split("|") for row in seen]
    assert {host for host, _, _ in rows} == {HOSTS["app1"], HOSTS["app2"]}, rows
    assert all(ssl == "t" and version.startswith("TLSv1.") for _, ssl, version in rows), rows


def test_plain_http_on_an_app_host_only_redirects(site):
    answer = httpx.post(f"http://{HOSTS['app2']}/threads", json={}, headers={"x-api-key": site["key"]}, trust_env=False)
    assert answer.status_code == 308 and answer.headers["location"] == f"https://{HOSTS['app2']}/threads"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{HOSTS['app2']}/healthz", trust_env=False)


def _refused_count(machine) -> int:
    """Packets the backend rule refused so far (nft's counter on that rule)."""
    rule = [
        r
        for r in machine.ssh("nft list chain inet appliance input").stdout.splitlines()
        if "reject with tcp reset" in r
    ]
    assert len(rule) == 1, rule
    return int(rule[0].split("packets", 1)[1].split()[0])


def test_a_second_run_on_three_hosts_changes_nothing(site, bundle):
    second = run_playbook(bundle, site["inventory"], site["workdir"] / "second-run.log")
    second.assert_ok(site["machines"].values())
    print(f"\nthree hosts: second playbook run {second.seconds:.0f} s")
    assert {host: counts["changed"] for host, counts in second.recap.items()} == dict.fromkeys(HOSTS, 0)
