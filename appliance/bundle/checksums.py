"""``SHA256SUMS`` in the format of coreutils' ``sha256sum`` (``sha256sum -c`` reads it).

The playbook checks the same file with its own module (ansible/roles/bundle/library),
which cannot import the appliance: the controller need not have it installed.
"""

from __future__ import annotations

from pathlib import Path

from appliance.manifest import sha256_of

SUMS = "SHA256SUMS"


def bundle_files(root: Path) -> list[Path]:
    """Every regular file under root, but SHA256SUMS itself, in a stable order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != SUMS)


def write_sums(root: Path) -> int:
    lines = [f"{sha256_of(path)}  {path.relative_to(root).as_posix()}" for path in bundle_files(root)]
    (root / SUMS).write_text("\n".join(lines) + "\n")
    return len(lines)
