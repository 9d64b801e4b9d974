"""The `feastflow` command: run a worker or an API pod, mint local tokens, create topics, migrate, seed, and
deploy the local stack (rollout, rollback, releases, rehearse)."""

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from core.logs import configure_logging
from core.settings import InvalidSetting, Settings

if TYPE_CHECKING:
    from ops.probes import Guardrails


def add_guardrail_arguments(command: argparse.ArgumentParser) -> None:
    from ops.probes import Guardrails

    default = Guardrails()
    command.add_argument("--ready-timeout-s", type=float, default=default.ready_timeout_s)
    command.add_argument("--bake-s", type=float, default=default.bake_s, help="a new unit must stay up this long")
    command.add_argument("--watch-s", type=float, default=default.watch_s, help="objectives watched after the roll")
    command.add_argument("--max-error-ratio", type=float, default=default.max_error_ratio)
    command.add_argument("--max-freshness-s", type=float, default=default.max_freshness_s)
    command.add_argument("--prometheus", default=default.prometheus, help="where to read the objectives")
    command.add_argument("--no-objectives", action="store_true", help="do not read Prometheus (liveness only)")


def guardrails_from(args: argparse.Namespace) -> "Guardrails":
    from ops.probes import Guardrails

    return Guardrails(
        ready_timeout_s=args.ready_timeout_s,
        bake_s=args.bake_s,
        watch_s=args.watch_s,
        max_error_ratio=args.max_error_ratio,
        max_freshness_s=args.max_freshness_s,
        prometheus=None if args.no_objectives else args.prometheus,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feastflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run a stream worker (Faust)")
    commands.add_parser("api", help="run an API pod (aiohttp)")
    token = commands.add_parser("token", help="print a signed token for the local stack")
    token.add_argument("--role", choices=["admin", "customer", "restaurant"], required=True)
    token.add_argument("--sub", default=None, help="subject (user id); defaults to a name per role")
    token.add_argument(
        "--ttl", type=int, default=None, help="lifetime in seconds (default and cap: the role's maximum)"
    )
    commands.add_parser("topics", help="create the project's Kafka topics (idempotent)")
    commands.add_parser("migrate", help="apply PostgreSQL migrations (idempotent)")
    seed = commands.add_parser("seed", help="publish demo data through the admin API")
    seed.add_argument("--url", default="http://127.0.0.1:8080")
    seed.add_argument("--cities", default=None, help="comma-separated (default: every city served but launching ones)")
    seed.add_argument("--force", action="store_true", help="publish even if the catalog log has events")
    roll = commands.add_parser("rollout", help="rolling deploy of the local stack (API pods, then the worker)")
    version = roll.add_mutually_exclusive_group()
    version.add_argument("--ref", help="a git ref to roll to (default: this checkout as it is)")
    version.add_argument("--path", help="another checkout to roll to")
    roll.add_argument("--only", choices=["api", "worker"], help="roll only these units")
    add_guardrail_arguments(roll)
    back = commands.add_parser("rollback", help="return the local stack to an earlier release, with zero downtime")
    back.add_argument("--to", type=int, help="release number (default: the last good one before the current)")
    add_guardrail_arguments(back)
    commands.add_parser("releases", help="the local stack's release history")
    canary = commands.add_parser("canary", help="run a pricing candidate in shadow, then promote or abort it")
    canary.add_argument("--candidate", required=True, help="a git ref or the path of another checkout")
    canary.add_argument("--expect", default="", help='declared price changes, e.g. [{"ratio":1.1,"city":"blr"}]')
    canary.add_argument("--policy", help="thresholds (default: deploy/canary/pricing.toml)")
    canary.add_argument("--prometheus", default="http://127.0.0.1:9090")
    canary.add_argument("--no-promote", action="store_true", help="analyse only")
    rehearse = commands.add_parser("rehearse", help="traffic against the local stack while every unit is rolled")
    rehearse.add_argument("--clients", type=int, default=500, help="SSE menu clients")
    rehearse.add_argument("--rolls", type=int, default=2, help="how many times every unit is rolled")
    rehearse.add_argument("--admin-rate", type=float, default=10.0, help="admin changes per second")
    rehearse.add_argument("--order-rate", type=float, default=5.0, help="orders per second")
    rehearse.add_argument("--only", choices=["api", "worker"], help="roll only these units")
    rebuild = commands.add_parser("rebuild-projection", help="rewrite Redis from the workers' tables")
    rebuild.add_argument("--city", action="append", help="a city (repeatable); default: every city")
    supervisor = commands.add_parser("supervise", help="keep the local stack's units running (restarts, back-off)")
    supervisor.add_argument("--status", action="store_true", help="print each unit's pid, uptime and restarts")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except InvalidSetting as invalid:
        print(f"feastflow: {invalid}", file=sys.stderr)
        return 2
    configure_logging()

    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "api":
        from api.processes import run_api

        run_api(settings)
        return 0
    if args.command == "token":
        from core.tokens import KeyRing, Role, WeakSigningKey, issue_token

        try:
            keys = KeyRing.from_settings(settings)
            keys.check_strength()
        except WeakSigningKey as weak:
            print(f"{weak} (set FEASTFLOW_JWT_SECRET or FEASTFLOW_JWT_KEYS, or run `make run`)", file=sys.stderr)
            return 2
        try:
            print(issue_token(keys, Role(args.role), args.sub or f"local-{args.role}", args.ttl))
        except ValueError as refused:  # a lifetime above the role's cap
            print(refused, file=sys.stderr)
            return 2
        return 0
    if args.command == "topics":
        from ops.create_topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print(f"topics created: {', '.join(created) or 'none (all present)'}")
        return 0
    if args.command == "migrate":
        from core.schema import migrate

        applied = asyncio.run(migrate(settings.pg_dsn))
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    if args.command == "seed":
        from core.tokens import Role, issue_token
        from ops.create_topics import catalog_has_events
        from ops.seed import SeedPlan, demo_cities
        from ops.seed import seed as run_seed

        if asyncio.run(catalog_has_events(settings)) and not args.force:
            print("seeded: nothing (the catalog log already has events; --force to publish the demo again)")
            return 0
        token_value = issue_token(settings.jwt_secret, Role.ADMIN, "seed")
        cities = tuple(args.cities.split(",")) if args.cities else demo_cities(settings.cities)
        published = asyncio.run(run_seed(args.url, token_value, SeedPlan(cities)))
        print(f"seeded: {published}")
        return 0
    if args.command in ("rollout", "rollback"):
        from ops.rollout import rollback, rollout
        from ops.stack import RolloutFailed

        guard = guardrails_from(args)
        try:
            if args.command == "rollout":
                asyncio.run(rollout(settings, args.ref, args.path, args.only, guard))
            else:
                asyncio.run(rollback(settings, args.to, guard))
        except RolloutFailed as failure:
            print(f"{args.command} failed: {failure}", file=sys.stderr)
            return 1
        return 0
    if args.command == "canary":
        from pathlib import Path

        from ops.canary import CanaryAborted, CanaryPolicy
        from ops.canary import canary as run_canary

        policy = CanaryPolicy.load(Path(args.policy)) if args.policy else CanaryPolicy.load()
        try:
            asyncio.run(run_canary(settings, args.candidate, args.expect, policy, not args.no_promote, args.prometheus))
        except CanaryAborted as abort:
            print(f"canary aborted: {abort}", file=sys.stderr)
            return 1
        return 0
    if args.command == "releases":
        from ops.releases import ReleaseHistory, print_releases

        print_releases(ReleaseHistory(settings.data_dir).all())
        return 0
    if args.command == "rehearse":
        from ops.rehearsal import Sizes, report_rows
        from ops.rehearsal import rehearse as run_rehearsal
        from ops.results import markdown_table, publish

        sizes = Sizes(
            sse_clients=args.clients,
            rolls=args.rolls,
            admin_per_s=args.admin_rate,
            orders_per_s=args.order_rate,
            only=args.only,
        )
        result = asyncio.run(run_rehearsal(settings, sizes))
        table = markdown_table(("rehearsal", "value"), report_rows(result))
        print(table)
        command = " ".join([".venv/bin/feastflow", *(argv if argv is not None else sys.argv[1:])])
        kind = f"rehearsal-{args.only}" if args.only else "rehearsal"  # a rehearsal of one kind of unit apart
        print(f"(written to {publish(kind, command, result, table)})")
        failed = {name: count for name, count in result["failures"].items() if count}
        if failed:
            print(f"rehearsal FAILED: {failed}; reasons: {result['failure_reasons']}", file=sys.stderr)
            return 1
        print("rehearsal passed: zero failed requests, zero lost changes, every order decided once")
        return 0
    if args.command == "rebuild-projection":
        from ops.rebuild import request_rebuild

        cities = tuple(args.city or settings.city_codes)
        asyncio.run(request_rebuild(settings, cities))
        print(f"rebuild requested for: {', '.join(cities)} (the workers rewrite Redis in order with other changes)")
        return 0
    if args.command == "supervise":
        from ops.supervisor import print_status, supervise

        return print_status(settings) if args.status else supervise(settings)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
