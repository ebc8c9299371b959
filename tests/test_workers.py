"""`make test`'s workers: `make test`'s own pytest command, run on a small tree
of modules, keeps each module whole on one worker and the droplet suite's
modules together on one, while both workers work."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests.conftest import pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401
"""

MODULE = """
import os
import time

import pytest


@pytest.mark.parametrize("i", range(4))
def test_records_its_worker(i):
    time.sleep(0.05)
    with open(os.environ["WORKERS_SEEN"], "a") as seen:
        seen.write(f"{__file__} {os.environ['PYTEST_XDIST_WORKER']}\\n")
"""


def make_test_arguments() -> list[str]:
    """The options of the Makefile's pytest command, with its default number of workers."""
    makefile = (ROOT / "Makefile").read_text()
    workers = re.search(r"^TEST_WORKERS \?= (\d+)$", makefile, re.M).group(1)
    command = re.search(r"^\t\$\(BIN\)/pytest (.*)$", makefile, re.M).group(1)
    return command.replace("$(TEST_WORKERS)", workers).split()


def test_make_test_keeps_each_module_on_one_worker_and_the_droplet_suite_together(tmp_path):
    tree = tmp_path / "tree"
    for module in ("droplet/test_one_host", "droplet/test_three_hosts", "test_a", "test_b", "test_c"):
        path = tree / "tests" / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(MODULE)
    (tree / "tests" / "conftest.py").write_text(CONFTEST)
    seen = tmp_path / "seen.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKERS_SEEN": str(seen)}
    pytest = Path(sys.executable).with_name("pytest")
    ran = subprocess.run(
        [str(pytest), *make_test_arguments(), "-q", "-p", "no:cacheprovider", "--rootdir", str(tree), "tests"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr

    workers_of = collections.defaultdict(set)
    for line in seen.read_text().splitlines():
        module, worker = line.split()
        workers_of[Path(module).relative_to(tree).as_posix()].add(worker)
    assert len(workers_of) == 5 and all(len(w) == 1 for w in workers_of.values()), workers_of
    droplet = workers_of["tests/droplet/test_one_host.py"] | workers_of["tests/droplet/test_three_hosts.py"]
    assert len(droplet) == 1, workers_of
    assert len(set().union(*workers_of.values())) == 2, workers_of
