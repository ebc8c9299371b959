"""``appliance bundle build``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.bundle import debian
from appliance.bundle.build import BuildOptions, build
from appliance.bundle.debian import BundleBuildError


def bundle(args: argparse.Namespace) -> int:
    def optional_path(value: str | None) -> Path | None:
        return Path(value).expanduser() if value else None

    options = BuildOptions(
        source=Path(args.source),
        output=Path(args.output).expanduser().resolve(),
        cache=Path(args.cache).expanduser().resolve(),
        mirror=args.mirror or debian.DEFAULT_MIRROR,
        security_mirror=args.security_mirror or debian.DEFAULT_SECURITY_MIRROR,
        ollama_binary=optional_path(args.ollama_binary),
        ollama_models=optional_path(args.ollama_models),
    )
    try:
        build(options, log=lambda line: print(f"bundle: {line}", flush=True))
    except BundleBuildError as exc:
        print(f"appliance bundle build: {exc}", file=sys.stderr)
        return 2
    return 0
