"""Droplets in a box: Debian 12 booted with ``systemd-nspawn -b``, each in a
network namespace of ours, on a LAN bridge of ours, with no route to the internet.

The LAN is 10.77.0.0/24 on a bridge whose host end (10.77.0.1) is the Ansible
controller. Each droplet also has a route to 203.0.113.0/24 (TEST-NET-3) through
the host, which holds 203.0.113.10: an address outside the LAN that answers,
so a refused connection to it proves the egress policy, not a missing route.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RELEASE = "bookworm"
MIRROR = os.environ.get("DROPLET_MIRROR", "http://deb.debian.org/debian")
# What a cloud provider's plain Debian 12 droplet has: systemd, SSH, Python for Ansible.
DROPLET_PACKAGES = "systemd-sysv,dbus,openssh-server,python3,iproute2,sudo"
LAN_PREFIX = "10.77.0"
HOST_ADDRESS = f"{LAN_PREFIX}.1"
LAN = f"{LAN_PREFIX}.0/24"
OUTSIDE_NETWORK = "203.0.113.0/24"
OUTSIDE_ADDRESS = "203.0.113.10"
BRIDGE = "aplbr0"


def run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kwargs)


def missing_tools() -> list[str]:
    tools = ["debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen"]
    return [tool for tool in tools if shutil.which(tool) is None]


def base_image(cache: Path) -> Path:
    """A plain Debian 12 root, debootstrapped once and kept in the cache."""
    image = cache / f"droplet-{RELEASE}"
    if (image / "usr/sbin/sshd").exists():
        return image
    partial = cache / f"droplet-{RELEASE}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    run("debootstrap", "--variant=minbase", f"--include={DROPLET_PACKAGES}", RELEASE, str(partial), MIRROR)
    partial.rename(image)
    return image


class Lan:
    """The bridge, the host's addresses on it, and a listener outside the LAN."""

    def __init__(self) -> None:
        run("ip", "link", "del", BRIDGE, check=False)  # left by a run that was killed
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "addr", "add", f"{OUTSIDE_ADDRESS}/32", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        self.outside = Listener(OUTSIDE_ADDRESS)
        self.inside = Listener(HOST_ADDRESS)

    def close(self) -> None:
        self.outside.close()
        self.inside.close()
        run("ip", "link", "del", BRIDGE, check=False)


class Listener:
    """A TCP port that accepts and closes: something to connect to."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_server((address, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


class Droplet:
    """One booted Debian 12 machine, reachable over SSH at ``address``."""

    def __init__(self, name: str, address: str, image: Path, workdir: Path, ssh_key: Path) -> None:
        self.name = name
        self.address = address
        self.ssh_key = ssh_key
        self.root = workdir / name
        self.netns = f"apl-{name}"
        self.console = workdir / f"{name}.console.log"
        self.process: subprocess.Popen | None = None
        shutil.rmtree(self.root, ignore_errors=True)
        run("cp", "-a", "--reflink=auto", str(image), str(self.root))
        (self.root / "etc/hostname").write_text(name + "\n")
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{ssh_key}.pub").read_text())
        self._network()

    def _network(self) -> None:
        host_end = f"aplv-{self.name}"[:15]
        run("ip", "netns", "del", self.netns, check=False)  # left by a run that was killed
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        run("ip", "link", "set", host_end, "master", BRIDGE, "up")
        ns = ("ip", "-n", self.netns)
        run(*ns, "link", "set", "lo", "up")
        run(*ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run(*ns, "link", "set", "eth0", "up")
        run(*ns, "route", "add", OUTSIDE_NETWORK, "via", HOST_ADDRESS)

    def boot(self, timeout: float = 120) -> None:
        log = self.console.open("ab")
        self.process = subprocess.Popen(
            [
                "systemd-nspawn", "--quiet", "--boot", f"--directory={self.root}", f"--machine={self.name}",
                "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{self.netns}",
                # systemd's IPAddressDeny= needs bpf(), which nspawn filters by default;
                # a real droplet's systemd has it.
                "--system-call-filter=bpf",
                # nftables: a droplet's root may change its own firewall.
                "--capability=CAP_NET_ADMIN",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.ssh("systemctl is-system-running --wait", check=False, timeout=60).stdout.strip() not in (
            "running",
            "degraded",
        ):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not boot; see {self.console}")
            time.sleep(1)

    def ssh(self, command: str, *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = ["ssh", *ssh_options(self.ssh_key), f"root@{self.address}", command]
        result = subprocess.run(argv, text=True, capture_output=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f"{self.name}$ {command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def reboot(self, timeout: float = 120) -> None:
        self.ssh("systemctl reboot", check=False, timeout=30)
        assert self.process is not None
        # nspawn exits with 133 when the machine asks for a reboot; start it again.
        code = self.process.wait(timeout)
        assert code == 133, f"{self.name}: systemd-nspawn exited with {code}, not 133 (reboot)"
        self.boot(timeout)

    def shutdown(self) -> None:
        if self.process and self.process.poll() is None:
            self.ssh("systemctl poweroff", check=False, timeout=30)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        run("ip", "netns", "del", self.netns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def ssh_options(key: Path) -> list[str]:
    return [
        "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
    ]  # fmt: skip


@contextmanager
def droplets(specs: dict[str, str], image: Path, workdir: Path, ssh_key: Path) -> Iterator[dict[str, Droplet]]:
    """Boot machines named by ``specs`` ({name: address}); power them off afterwards."""
    machines: dict[str, Droplet] = {}
    try:
        for name, address in specs.items():
            machines[name] = Droplet(name, address, image, workdir, ssh_key)
            machines[name].boot()
        yield machines
    finally:
        for machine in machines.values():
            machine.shutdown()
