"""The `feastflow` command: run a worker or an API pod, mint local tokens, create topics, migrate, seed."""

import argparse
import asyncio
import sys

from feastflow.logs import configure_logging
from feastflow.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feastflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run a stream worker (Faust)")
    commands.add_parser("api", help="run an API pod (aiohttp)")
    token = commands.add_parser("token", help="print a signed token for the local stack")
    token.add_argument("--role", choices=["admin", "customer", "restaurant"], required=True)
    token.add_argument("--sub", default=None, help="subject (user id); defaults to a name per role")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    commands.add_parser("topics", help="create the project's Kafka topics (idempotent)")
    commands.add_parser("migrate", help="apply PostgreSQL migrations (idempotent)")
    seed = commands.add_parser("seed", help="publish demo data through the admin API")
    seed.add_argument("--url", default="http://127.0.0.1:8080")
    seed.add_argument("--cities", default="blr,mum,del")
    seed.add_argument("--force", action="store_true", help="publish even if the catalog log has events")
    rebuild = commands.add_parser("rebuild-projection", help="rewrite Redis from the workers' tables")
    rebuild.add_argument("--city", action="append", help="a city (repeatable); default: every city")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging()

    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "api":
        from api.main import run_api

        run_api(settings)
        return 0
    if args.command == "token":
        from api.auth import Role, issue_token

        if not settings.jwt_secret:
            print("no signing secret: set FEASTFLOW_JWT_SECRET or run `make run` first", file=sys.stderr)
            return 2
        print(issue_token(settings.jwt_secret, Role(args.role), args.sub or f"local-{args.role}", args.ttl))
        return 0
    if args.command == "topics":
        from feastflow.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print(f"topics created: {', '.join(created) or 'none (all present)'}")
        return 0
    if args.command == "migrate":
        from feastflow.migrate import migrate

        applied = asyncio.run(migrate(settings.pg_dsn))
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    if args.command == "seed":
        from api.auth import Role, issue_token
        from feastflow.seed import SeedPlan
        from feastflow.seed import seed as run_seed
        from feastflow.topics import catalog_has_events

        if asyncio.run(catalog_has_events(settings)) and not args.force:
            print("seeded: nothing (the catalog log already has events; --force to publish the demo again)")
            return 0
        token_value = issue_token(settings.jwt_secret, Role.ADMIN, "seed")
        published = asyncio.run(run_seed(args.url, token_value, SeedPlan(tuple(args.cities.split(",")))))
        print(f"seeded: {published}")
        return 0
    if args.command == "rebuild-projection":
        from feastflow.rebuild import request_rebuild

        cities = tuple(args.city or settings.city_codes)
        asyncio.run(request_rebuild(settings, cities))
        print(f"rebuild requested for: {', '.join(cities)} (the workers rewrite Redis in order with other changes)")
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
