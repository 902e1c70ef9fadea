"""Look after the published versions and their aliases (`posevit registry`).

    posevit registry list                              versions, newest first, with scores and aliases
    posevit registry show production                   a version (or an alias's): manifest, metrics, history
    posevit registry diff production staging           scores side by side, per class, McNemar's test
    posevit registry promote staging --to production   move an alias, if the gate metrics hold up
    posevit registry rollback production               back to the alias's previous version
    posevit registry gc --keep 5                       what gc would delete (--yes deletes it)

The registry is the project's push.* (`--registry registry`, the default, in the project) or any
s3://BUCKET/PREFIX/NAME, reached through the AWS chain (AWS_ENDPOINT_URL_S3, AWS_PROFILE...). A version is
named by its hash or by an alias (`latest` included). Exit codes: 0 done, 2 refused or a bad name.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from posevit.core.entrypoint import CommandParser, run_command
from posevit.publish.location import Registry, parse_registry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from posevit.publish.catalog import VersionInfo


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="posevit registry",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    where = CommandParser(add_help=False)
    where.add_argument(
        "--registry",
        "-r",
        default="registry",
        help="registry (the project's push.*, default) or s3://BUCKET/PREFIX/NAME",
    )
    subparsers = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=summary, description=summary, parents=[where])

    listing = command("list", "versions, newest first")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = command("show", "one version: manifest, metrics, history")
    show.add_argument("name", metavar="VERSION|ALIAS")
    show.add_argument("--json", action="store_true")
    diff = command("diff", "compare two versions on the same test images")
    diff.add_argument("a", metavar="A", help="version or alias (the baseline)")
    diff.add_argument("b", metavar="B", help="version or alias (the candidate)")
    diff.add_argument("--json", action="store_true")
    promote = command("promote", "point an alias at a version, gate-checked")
    promote.add_argument("name", metavar="VERSION|ALIAS")
    promote.add_argument("--to", required=True, metavar="ALIAS", help="the alias to move, e.g. production")
    promote.add_argument("--force", action="store_true", help="move it even below the current version's gate")
    rollback = command("rollback", "move an alias back to its previous version")
    rollback.add_argument("alias", metavar="ALIAS")
    for moving in (promote, rollback):
        moving.add_argument("--message", "-m", default="", help="why (kept in the alias's history)")
        moving.add_argument("--by", default=None, help="who (default: your user name)")
    gc = command("gc", "delete versions no alias needs (a dry run unless --yes)")
    gc.add_argument(
        "--keep", type=int, required=True, metavar="N", help="also keep what each alias's last N moves name"
    )
    gc.add_argument("--yes", action="store_true", help="really delete")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from posevit.core.errors import ConfigError
    from posevit.publish.s3 import make_client

    registry, named = parse_registry(args.registry)
    if named is not None:
        raise ConfigError(
            f"--registry {args.registry}: name the registry alone (s3://BUCKET/PREFIX/NAME or registry); "
            f"the version or alias goes after the action"
        )
    client = make_client(registry.endpoint_url, registry.region)
    return ACTIONS[args.action](client, registry, args)


def _print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _score(value: Any) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{float(value):.4f}"


def _size(size: int) -> str:
    scaled = float(size)
    for unit in ("B", "KB", "MB"):
        if scaled < 1000:
            return f"{size} B" if unit == "B" else f"{scaled:.1f} {unit}"
        scaled /= 1000
    return f"{scaled:.1f} GB"


def _summary(info: VersionInfo, aliases: list[str]) -> dict[str, Any]:
    return {
        "version": info.version,
        "published_at": info.published_at,
        "accuracy": info.metrics.get("accuracy"),
        "f1_weighted": info.metrics.get("f1_weighted"),
        "ece": info.metrics.get("ece"),
        "int8_accuracy": info.int8_accuracy,
        "size": info.size,
        "aliases": aliases,
    }


def _aliases_by_version(client: S3Client, registry: Registry) -> dict[str, list[str]]:
    from posevit.publish.aliases import LATEST, list_aliases, read_pointer

    by_version: dict[str, list[str]] = {}
    latest, _ = read_pointer(client, registry.address, LATEST)
    if latest is not None:
        by_version.setdefault(latest["version"], []).append(LATEST)
    for alias, record in sorted(list_aliases(client, registry.address).items()):
        by_version.setdefault(record["version"], []).append(alias)
    return by_version


def list_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.catalog import list_versions

    aliases = _aliases_by_version(client, registry)
    rows = [_summary(info, aliases.get(info.version, [])) for info in list_versions(client, registry.address)]
    if args.json:
        _print_json(rows)
        return 0
    header = ("VERSION", "PUBLISHED", "ACCURACY", "F1", "ECE", "INT8 ACC", "SIZE", "ALIASES")
    table = [header] + [
        (
            row["version"],
            row["published_at"],
            _score(row["accuracy"]),
            _score(row["f1_weighted"]),
            _score(row["ece"]),
            _score(row["int8_accuracy"]),
            _size(row["size"]),
            ", ".join(row["aliases"]),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    if not rows:
        print(f"(no versions at {registry.address.uri()}/ yet: run the push stage, `dvc repro push`)")
    return 0


def _resolve(client: S3Client, registry: Registry, name: str) -> VersionInfo:
    from posevit.publish.aliases import resolve_name
    from posevit.publish.catalog import read_version

    return read_version(client, registry.address, resolve_name(client, registry.address, name)[0])


def show_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.aliases import history, list_aliases

    info = _resolve(client, registry, args.name)
    moves = [
        move
        for alias in sorted(list_aliases(client, registry.address))
        for move in history(client, registry.address, alias)
        if info.version in (move["version"], move["from_version"])
    ]
    payload = {
        **_summary(info, _aliases_by_version(client, registry).get(info.version, [])),
        "uri": registry.address.uri(info.version) + "/",
        "gate": info.gate,
        "metrics": info.metrics,
        "files": info.manifest["files"],
        "history": sorted(moves, key=lambda move: move["moved_at"]),
    }
    if args.json:
        _print_json(payload)
        return 0
    print(f"version    {info.version}  ({payload['uri']})")
    print(f"published  {info.published_at}   size {_size(info.size)}   aliases {', '.join(payload['aliases']) or '-'}")
    print(f"gate       {', '.join(info.gate)}")
    print("metrics")
    for key, value in info.metrics.items():
        print(f"  {key:<22} {value}")
    print("files")
    for name, entry in info.manifest["files"].items():
        print(f"  {name:<40} {_size(entry['size']):>9}  sha256 {entry['sha256'][:12]}")
    print("history" if moves else "history    (no alias has pointed at it)")
    for move in payload["history"]:
        print(
            f"  {move['moved_at']}  {move['alias']}: {move['from_version'] or '(new)'} -> {move['version']}  "
            f"by {move['by']}: {move['message']}"
        )
    return 0


def diff_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.catalog import read_predictions
    from posevit.publish.compare import COMPARED_METRICS, compare_predictions

    a, b = _resolve(client, registry, args.a), _resolve(client, registry, args.b)
    comparison = compare_predictions(
        read_predictions(client, registry.address, a), read_predictions(client, registry.address, b)
    )
    metrics = {name: (a.metrics.get(name), b.metrics.get(name)) for name in COMPARED_METRICS}
    metrics["int8_accuracy"] = (a.int8_accuracy, b.int8_accuracy)
    test = comparison.mcnemar
    if args.json:
        _print_json(
            {
                "a": a.version,
                "b": b.version,
                "metrics": metrics,
                "per_class_accuracy": comparison.per_class,
                "mcnemar": {**vars(test), "verdict": test.verdict()},
            }
        )
        return 0
    print(f"A = {args.a} ({a.version})   B = {args.b} ({b.version})")
    print(f"{'metric':<16} {'A':>8} {'B':>8} {'B - A':>8}")
    for name, (old, new) in metrics.items():
        delta = "-" if old is None or new is None else _score(new - old)
        delta = delta if delta.startswith(("-", "+")) else f"+{delta}"
        print(f"{name:<16} {_score(old):>8} {_score(new):>8} {delta:>8}")
    print(f"\n{'class accuracy':<22} {'A':>7} {'B':>7} {'B - A':>7}")
    for label, (old, new) in comparison.per_class.items():
        print(f"{label:<22} {old:>7.3f} {new:>7.3f} {new - old:>+7.3f}")
    print(
        f"\nMcNemar's exact test on {sum((test.only_a_right, test.only_b_right, test.both_right, test.both_wrong))} "
        f"paired images: {test.only_a_right} only A got right, {test.only_b_right} only B: {test.verdict()}"
    )
    return 0


def promote_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.aliases import resolve_name
    from posevit.publish.promotion import promote

    version, _ = resolve_name(client, registry.address, args.name)
    result = promote(client, registry.address, version, args.to, args.by, args.message, args.force)
    if result.record is None:
        print(f"{args.to} already points to {version}: nothing moved")
    else:
        forced = f" (forced past {', '.join(result.shortfalls)})" if result.shortfalls else ""
        print(f"{args.to}: {result.record['from_version'] or '(new)'} -> {version}{forced}")
    return 0


def rollback_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.promotion import rollback

    record = rollback(client, registry.address, args.alias, args.by, args.message)
    print(f"{args.alias}: {record['from_version']} -> {record['version']} (rolled back)")
    return 0


def gc_command(client: S3Client, registry: Registry, args: argparse.Namespace) -> int:
    from posevit.publish.promotion import collect, plan_collection

    plan = plan_collection(client, registry.address, args.keep)
    for version, reasons in plan.kept.items():
        print(f"keep    {version}  ({', '.join(reasons)})")
    for info in plan.delete:
        print(f"{'delete' if args.yes else 'would delete'}  {info.version}  ({info.published_at}, {_size(info.size)})")
    if not args.yes:
        print(f"dry run: {len(plan.delete)} version(s) would be deleted; pass --yes to delete them")
        return 0
    deleted = collect(client, registry.address, plan, args.keep)
    print(f"deleted {len(deleted)} version(s)")
    return 0


ACTIONS = {
    "list": list_command,
    "show": show_command,
    "diff": diff_command,
    "promote": promote_command,
    "rollback": rollback_command,
    "gc": gc_command,
}
