"""Session-wide real services: PostgreSQL (a fresh database per app) and a
Chroma server; and how `make test` spreads the modules over its workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import offline  # noqa: F401  (offline switches before anything else)
from tests.support.services import Databases, chroma_server, postgres_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked slow come first: `make test`'s workers start the longest
    work while the short modules fill the other worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") == "loadscope":
        from tests.support.workers import ModuleScheduling

        return ModuleScheduling(config, log)
    return None


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def databases(workdir: Path) -> Iterator[Databases]:
    with postgres_server(workdir) as url:
        dbs = Databases(url)
        yield dbs
        dbs.drop_all()


@pytest.fixture(scope="session")
def chroma_url(workdir: Path) -> Iterator[str]:
    with chroma_server(workdir) as url:
        yield url


@pytest.fixture(scope="module")
async def scripted_app(databases, chroma_url, tmp_path_factory):
    """The appliance with a scripted model, on a fresh database, served over HTTP."""
    from tests.support.app import serve_scripted

    async with serve_scripted(tmp_path_factory.mktemp("app"), databases.create(), chroma_url) as served:
        yield served


@pytest.fixture(scope="module")
async def librarian_app(databases, chroma_url, tmp_path_factory):
    """The appliance with the scripted librarian (tests/support/librarian.py) as its model."""
    from tests.support.app import serve_scripted
    from tests.support.librarian import Librarian

    async with serve_scripted(
        tmp_path_factory.mktemp("app"), databases.create(), chroma_url, delay=0.01, reply=Librarian()
    ) as served:
        yield served
