#!/usr/bin/python
"""Pack folders of a checked bundle into one tar each, for the copy to hosts."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_pack
short_description: Pack parts of a checked appliance bundle into tar archives for transfer
description:
  - Copying a folder of a few hundred files costs Ansible a round trip per file,
    on every run; one archive per part costs one, and the copy module compares
    it by checksum.
  - Each archive is named for the SHA256SUMS entries of its part, so an
    unchanged part reuses the archive made before, and its bytes are the same
    every time (sorted members, fixed owner, mode and mtime). Archives of
    other versions of a part are removed.
  - Run it after bundle_checksums, which proves the entries match the files.
options:
  path:
    description: The unpacked bundle (the folder holding SHA256SUMS).
    type: path
    required: true
  parts:
    description: Folders of the bundle to pack.
    type: list
    elements: str
    required: true
  dest:
    description: The folder on the controller that keeps the archives.
    type: path
    required: true
author: Appliance maintainers
"""

import hashlib
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule

FORMAT = "appliance-bundle-pack/1"
MTIME = 946684800  # 2000-01-01: fixed, so the same files make the same bytes


def entries(root, part):
    """SHA256SUMS lines of the files under part/, sorted by name."""
    prefix = part.rstrip("/") + "/"
    with open(os.path.join(root, "SHA256SUMS")) as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    return sorted((name, digest) for digest, _, name in (line.partition("  ") for line in lines) if name.startswith(prefix))


def member(name, mode, size=0, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_archive(root, files, target):
    folders = sorted({os.path.dirname(name) for name, _ in files} - {""})
    partial = target + ".partial"
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
        for folder in folders:
            tar.addfile(member(folder, 0o755, kind=tarfile.DIRTYPE))
        for name, _ in files:
            path = os.path.join(root, name)
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            with open(path, "rb") as handle:
                tar.addfile(member(name, mode, os.path.getsize(path)), handle)
    os.replace(partial, target)


def pack(root, part, dest, write=True):
    """Return (archive path, whether it is new); write=False only names it."""
    files = entries(root, part)
    if not files:
        raise ValueError("%s/ has no files in SHA256SUMS" % part)
    key = hashlib.sha256(FORMAT.encode())
    for name, digest in files:
        key.update(("%s  %s\n" % (digest, name)).encode())
    target = os.path.join(dest, "%s-%s.tar" % (part, key.hexdigest()[:16]))
    new = not os.path.isfile(target)
    if not write:
        return target, new
    if new:
        write_archive(root, files, target)
    for other in os.listdir(dest):
        if other.startswith(part + "-") and os.path.join(dest, other) != target:
            os.unlink(os.path.join(dest, other))
    return target, new


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "parts": {"type": "list", "elements": "str", "required": True},
            "dest": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    root, dest = module.params["path"], module.params["dest"]
    if not module.check_mode:
        os.makedirs(dest, mode=0o700, exist_ok=True)
    archives, changed = {}, False
    for part in module.params["parts"]:
        try:
            archives[part], new = pack(root, part, dest, write=not module.check_mode)
        except (OSError, ValueError) as exc:
            module.fail_json(msg="cannot pack %s of the bundle at %s: %s" % (part, root, exc))
        changed = changed or new
    module.exit_json(changed=changed, archives=archives)


if __name__ == "__main__":
    main()
