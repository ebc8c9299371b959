"""``appliance``: the command line."""

from __future__ import annotations

import argparse
import sys

from appliance.settings import Settings, SettingsError, load_settings


def settings_or_exit(**overrides: object) -> Settings:
    import msgspec

    try:
        settings = load_settings()
        changes = {k: v for k, v in overrides.items() if v is not None}
        return msgspec.structs.replace(settings, **changes) if changes else settings
    except SettingsError as exc:
        print(f"appliance: bad setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="The offline AI agent appliance.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="address to listen on (default from APPLIANCE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default from APPLIANCE_PORT, 8000)")

    sub.add_parser("worker", help="execute queued runs without serving HTTP (for more hosts or processes)")

    chat = sub.add_parser("chat", help="chat in the terminal, with a running appliance or in-process")
    chat.add_argument("--url", help="a running appliance, e.g. http://127.0.0.1:8000 (default: in-process)")
    chat.add_argument("--key", help="API key (or APPLIANCE_API_KEY in the environment)")
    chat.add_argument("--key-file", help="file holding the API key (default: the admin key file)")
    chat.add_argument("--ca-file", help="with an https:// URL, the CA certificate to trust (an install's ca.crt)")
    chat.add_argument("--thread", help="continue this thread id instead of starting a new one")
    chat.add_argument(
        "-k",
        "--knowledge-base",
        action="append",
        metavar="NAME",
        help="a knowledge base a new conversation answers from, by name or id (repeatable; default: its assistant's)",
    )
    chat.add_argument("--assistant", "-a", metavar="NAME", help="the assistant of a new conversation (default: agent)")

    ingest = sub.add_parser("ingest", help="add files and folders to a knowledge base (txt, md, html, pdf)")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders to walk")
    ingest.add_argument("--knowledge-base", "-k", required=True, help="its name; created when it does not exist")
    ingest.add_argument("--url", help="a running appliance (default: in-process; use --url while one runs embedded)")
    ingest.add_argument("--key", help="API key (or APPLIANCE_API_KEY in the environment)")
    ingest.add_argument("--key-file", help="file holding the API key (default: the admin key file)")
    ingest.add_argument("--ca-file", help="with an https:// URL, the CA certificate to trust (an install's ca.crt)")
    ingest.add_argument("--tenant", default="default", help="in-process only: the tenant that owns it")
    ingest.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="create a key; it is printed alone on the last line")
    create.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    create.add_argument("--admin", action="store_true", help="the key may manage keys and read metrics")
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    first = keys_sub.add_parser(
        "bootstrap-admin", help="on a new appliance (no keys at all), create an admin key and write it to a file"
    )
    first.add_argument("--output", required=True, help="the file to write it to (created readable by this user only)")

    from appliance.cli.assistants import add_parser as add_assistants

    add_assistants(sub)

    from appliance.cli.tools import add_parser as add_tools

    add_tools(sub)

    audit = sub.add_parser("audit", help="the audit log: keys, knowledge bases, documents, limits, failed sign-ins")
    audit.add_argument(
        "--since", help="from this time: an ISO date or time (2026-12-01, 2026-12-01T09:00) or an age (30m, 2h, 7d)"
    )
    audit.add_argument("--tenant", help="only events of this tenant, or by its keys")
    audit.add_argument("--action", help="only this action, e.g. key.revoked")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many events (default 1000)")
    audit.add_argument("--json", action="store_true", help="one JSON object a line")

    backup = sub.add_parser("backup", help="write PostgreSQL and the Chroma vectors to one archive")
    backup.add_argument("--output", "-o", required=True, help="the archive to write (.tar.gz, readable by you only)")
    restore = sub.add_parser("restore", help="restore a backup onto an empty database and Chroma collection")
    restore.add_argument("archive", help="an archive written by 'appliance backup'")

    sub.add_parser("migrate", help="bring the database schema up to date (the service also does it at start)")

    sub.add_parser("doctor", help="check dependencies, model files, offline switches and services")

    models = sub.add_parser("models", help="the pinned models")
    models_sub = models.add_subparsers(dest="action", required=True)
    models_sub.add_parser("verify", help="check model files (and Ollama's digest) against models/manifest.toml")
    bundle = sub.add_parser("bundle", help="the offline bundle for air-gapped installs")
    bundle_sub = bundle.add_subparsers(dest="action", required=True)
    build = bundle_sub.add_parser("build", help="build the bundle archive (needs the network and root, once)")
    build.add_argument("--output", default="dist", help="folder for the archive (default: dist)")
    build.add_argument("--cache", default="~/.cache/appliance-bundle", help="where the Debian 12 build root is kept")
    build.add_argument("--source", default=".", help="the appliance's source tree (default: .)")
    build.add_argument("--mirror", help="Debian mirror (default: http://deb.debian.org/debian)")
    build.add_argument("--security-mirror", help="Debian security mirror")
    build.add_argument("--ollama-binary", help="an Ollama binary (linux-amd64) to ship")
    build.add_argument("--ollama-models", help="an Ollama model store (with manifests/ and blobs/) to ship")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from appliance.cli.serve import serve

        serve(settings_or_exit(host=args.host, port=args.port))
    elif args.command == "worker":
        from appliance.cli.worker import worker

        raise SystemExit(worker(settings_or_exit()))
    elif args.command == "chat":
        from appliance.cli.chat import chat

        raise SystemExit(chat(settings_or_exit(), args))
    elif args.command == "ingest":
        from appliance.cli.ingest import ingest

        raise SystemExit(ingest(settings_or_exit(), args))
    elif args.command == "keys":
        from appliance.cli.keys import keys

        raise SystemExit(keys(settings_or_exit(), args))
    elif args.command == "assistants":
        from appliance.cli.assistants import assistants

        raise SystemExit(assistants(settings_or_exit(), args))
    elif args.command == "tools":
        from appliance.cli.tools import tools

        raise SystemExit(tools(settings_or_exit(), args))
    elif args.command == "audit":
        from appliance.cli.audit import audit

        raise SystemExit(audit(settings_or_exit(), args))
    elif args.command in ("backup", "restore"):
        from appliance.cli.backup import backup_or_restore

        raise SystemExit(backup_or_restore(settings_or_exit(), args))
    elif args.command == "migrate":
        from appliance.cli.migrate import migrate

        raise SystemExit(migrate(settings_or_exit()))
    elif args.command == "doctor":
        from appliance.cli.doctor import doctor

        raise SystemExit(doctor())
    elif args.command == "models":
        from appliance.cli.models import verify

        raise SystemExit(verify(settings_or_exit()))
    elif args.command == "bundle":
        from appliance.cli.bundle import bundle

        raise SystemExit(bundle(args))


if __name__ == "__main__":
    main()
