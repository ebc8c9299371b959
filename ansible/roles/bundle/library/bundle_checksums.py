#!/usr/bin/python
"""Check an unpacked bundle against its SHA256SUMS."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bundle_checksums
short_description: Check an unpacked appliance bundle against its SHA256SUMS
description:
  - Reads C(SHA256SUMS) in O(path) and checks every file it lists; fails naming
    each file that is missing or whose sha256 differs, and each file that is
    not listed.
options:
  path:
    description: The unpacked bundle (the folder holding SHA256SUMS).
    type: path
    required: true
author: Appliance maintainers
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(root):
    sums = os.path.join(root, "SHA256SUMS")
    if not os.path.isfile(sums):
        return ["SHA256SUMS is missing: %s is not an unpacked bundle" % root], 0
    problems = []
    listed = set()
    with open(sums) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            expected, _, name = line.rstrip("\n").partition("  ")
            if len(expected) != 64 or not name:
                problems.append("SHA256SUMS line %d is malformed" % number)
                continue
            listed.add(name)
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                problems.append("%s is missing" % name)
            elif sha256(path) != expected:
                problems.append("%s does not match its SHA256SUMS entry" % name)
    for folder, _dirs, files in os.walk(root):
        for filename in files:
            name = os.path.relpath(os.path.join(folder, filename), root).replace(os.sep, "/")
            if name != "SHA256SUMS" and name not in listed and "__pycache__" not in name:
                problems.append("%s is not in SHA256SUMS" % name)
    return problems, len(listed)


def main():
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True)
    problems, count = check(module.params["path"])
    if problems:
        module.fail_json(
            msg="the bundle at %s is damaged or was changed: %s" % (module.params["path"], "; ".join(problems)),
            problems=problems,
        )
    module.exit_json(changed=False, files=count)


if __name__ == "__main__":
    main()
