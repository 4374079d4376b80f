"""The `tierline` command.

  tierline run                 all four services in one process (embedded default)
  tierline serve SERVICE       one service per process (docker-compose, scale-out)
  tierline token create ...    add an API token (printed once)
  tierline demo                play a day of tickets against a running Tierline
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared.auth import ROLES, TokenStore
from shared.bus import connect
from shared.config import SERVICES, ConfigError, Settings, load_settings
from shared.logs import setup_logging

log = logging.getLogger("tierline")


def build_services(names, settings: Settings, *, bus=None, clock=None):
    bus = bus or connect(settings.bus_url, prefix=settings.bus_prefix, prefetch=settings.prefetch,
                         batch=settings.consume_batch, queue_type=settings.bus_queue_type)
    services = [importlib.import_module(f"services.{name}.bootstrap").build(settings, bus=bus, clock=clock)
                for name in names]
    return services, bus


def ensure_first_admin(settings: Settings) -> str | None:
    """Embedded mode: create an admin token on the very first start and return it (shown once)."""
    store = TokenStore(settings.tokens_path())
    if settings.tokens_path().exists():
        return None
    return store.add(name="admin", role="admin", email="admin@localhost", tier=None, groups=[])


def _serve(names, settings: Settings, first_token: str | None = None) -> None:
    from shared.host import Host

    log.info("starting %s with settings %s", ", ".join(names), settings.redacted())
    services, bus = build_services(names, settings)
    host = Host(services, bus, host=settings.host, port=settings.port, threads=settings.http_threads)
    if first_token:
        print(f"\nFirst admin token (shown once, keep it): {first_token}\n"
              f"  export TIERLINE_TOKEN={first_token}\n", flush=True)
    print(f"Tierline ({', '.join(names)}) on http://{settings.host}:{host.port}", flush=True)
    host.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierline")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="all four services in one process, memory bus, SQLite under ./var")
    serve = sub.add_parser("serve", help="one service")
    serve.add_argument("service", choices=SERVICES)
    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--email")
    create.add_argument("--tier", choices=["L1", "L2", "L3", "DEV"])
    create.add_argument("--group", action="append", default=[])
    demo = sub.add_parser("demo", help="play a realistic day against a running Tierline")
    demo.add_argument("--url", default="http://127.0.0.1:8080")
    demo.add_argument("--token", default=None, help="admin token (default: $TIERLINE_TOKEN)")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"tierline: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    try:
        if args.command == "run":
            _serve(list(SERVICES), settings, ensure_first_admin(settings))
        elif args.command == "serve":
            _serve([args.service], settings)
        elif args.command == "token":
            try:
                token = TokenStore(settings.tokens_path()).add(
                    name=args.name, role=args.role, email=args.email, tier=args.tier, groups=args.group)
            except ValueError as exc:
                print(f"tierline: {exc}", file=sys.stderr)
                return 2
            print(token)
        elif args.command == "demo":
            from services.demo import play
            return play(args.url, args.token)
    except ConfigError as exc:
        print(f"tierline: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
