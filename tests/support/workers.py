"""How `make test` spreads the suite over its workers (pytest-xdist, ``--dist loadscope``).

Each module runs whole on one worker, as its tests share its app; the droplet
suite's modules all on one, as they share the bundle, the image and the LAN
bridge. (xdist's own ``loadgroup`` marks no longer group anything on pytest 9:
pytest-dev/pytest-xdist#1386.) ``_split_scope`` is xdist's own seam for
this, though not a public one: tests/test_workers.py shows when it stops working."""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

DROPLET_SUITE = "tests/droplet/"


class ModuleScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return DROPLET_SUITE if nodeid.startswith(DROPLET_SUITE) else nodeid.split("::", 1)[0]
