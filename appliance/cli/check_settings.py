"""``python -m appliance.cli.check_settings FILE``: exit 0 when FILE holds valid
settings, else print why and exit 1. Ansible validates appliance.toml with it
before the file replaces the one in use."""

from __future__ import annotations

import sys

from appliance.settings import SettingsError, load_settings


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appliance.cli.check_settings FILE", file=sys.stderr)
        return 2
    try:
        load_settings(env={}, config_file=argv[0])
    except SettingsError as exc:
        print(f"bad setting: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
