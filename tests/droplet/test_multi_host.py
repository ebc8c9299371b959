"""The same playbook across three droplets: two app hosts and one host with
PostgreSQL and Chroma. A conversation started through one app host goes on
through the other, and the data host lets in only the app hosts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.droplet.client import ApplianceClient
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
    with (
        ApplianceClient(f"http://{HOSTS['app1']}:8000", site["key"]) as one,
        ApplianceClient(f"http://{HOSTS['app2']}:8000", site["key"]) as two,
    ):
        kb_id = one.create_knowledge_base("shipping", "night.md", DOCUMENT)
        thread_id = one.create_thread(knowledge_bases=[kb_id])
        first = one.ask(thread_id, "When do trucks leave the Rotterdam warehouse for Antwerp?")
        assert first["citations"] and first["citations"][0]["source"] == "night.md"

        second = two.ask(thread_id, "And where do they go?")
        assert second["messages"][: len(first["messages"])] == first["messages"]
        assert len(second["messages"]) == len(first["messages"]) + 2
        assert one.get(f"/threads/{thread_id}/state").json()["values"]["messages"] == second["messages"]


def test_the_database_lets_in_the_app_hosts_only(site):
    password = (site["inventory"].parent / "credentials" / "postgresql-appliance").read_text().split()[0]
    # The controller is on the LAN but is not an app host: pg_hba.conf has no line for it.
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
        psycopg.connect(f"postgresql://appliance:{password}@{HOSTS['data']}:5432/appliance", connect_timeout=5)
    # An app host gets in with the same password.
    check = site["machines"]["app1"].ssh(
        f"PGPASSWORD={password} psql -h {HOSTS['data']} -U appliance -d appliance -XtAc 'SELECT 1'"
    )
    assert check.stdout.strip() == "1"


def test_a_second_run_on_three_hosts_changes_nothing(site, bundle):
    second = run_playbook(bundle, site["inventory"], site["workdir"] / "second-run.log")
    second.assert_ok(site["machines"].values())
    print(f"\nthree hosts: second playbook run {second.seconds:.0f} s")
    assert {host: counts["changed"] for host, counts in second.recap.items()} == dict.fromkeys(HOSTS, 0)
