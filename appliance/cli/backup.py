"""``appliance backup`` and ``appliance restore``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.settings import Settings
from appliance.store.backup import BackupError, backup, restore


def backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "backup":
            manifest = backup(settings, Path(args.output))
            print(
                f"backed up schema version {manifest.schema_version} and {manifest.vectors} vectors "
                f"(collection {manifest.collection!r}) to {args.output}"
            )
        else:
            manifest = restore(settings, Path(args.archive))
            print(
                f"restored the backup of {manifest.created_at} (appliance {manifest.appliance_version}, "
                f"schema version {manifest.schema_version}, {manifest.vectors} vectors); start the appliance now"
            )
    except BackupError as exc:
        print(f"appliance {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
