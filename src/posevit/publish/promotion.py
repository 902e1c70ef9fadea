"""Moving aliases on purpose: promote (gate-checked), roll back, and collect the versions nothing needs.

Promotion compares the candidate with the alias's current version on the candidate's gate metrics (the
metrics its push's conditions named, kept in its manifest): a candidate below on any of them is refused,
each shortfall named, unless forced (and then the history says what was forced past). Rolling back
moves the alias to the version it held before its last move, without a gate: it was serving there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from posevit.publish.aliases import (
    LATEST,
    AliasError,
    AliasRecord,
    check_alias_name,
    history,
    list_aliases,
    move_alias,
    read_pointer,
)
from posevit.publish.catalog import VersionInfo, delete_version, list_versions, read_version
from posevit.publish.location import ModelAddress
from posevit.publish.s3 import S3Error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class PromotionRefused(AliasError):
    """The candidate scores below the alias's current version on a gate metric."""


@dataclass(frozen=True)
class Promotion:
    record: AliasRecord | None  # None: the alias already pointed there, nothing moved
    shortfalls: list[str]  # what --force went past


def gate_shortfalls(candidate: VersionInfo, current: VersionInfo) -> list[str]:
    """Each gate metric of the candidate that is below the current version's, as `metric 0.81 < 0.85`."""
    shortfalls = []
    for metric in candidate.gate:
        new, old = candidate.metrics.get(metric), current.metrics.get(metric)
        if new is not None and old is not None and float(new) < float(old):
            shortfalls.append(f"{metric} {float(new):.4f} < {float(old):.4f}")
        elif new is None:
            shortfalls.append(f"{metric} not measured for {candidate.version}")
    return shortfalls


def promote(
    client: S3Client,
    address: ModelAddress,
    version: str,
    alias: str,
    by: str | None = None,
    message: str = "",
    force: bool = False,
) -> Promotion:
    """Point `alias` at `version` if it scores at least as well as the alias's current version on every gate
    metric (or `force`); AliasConflict if someone else moves the alias meanwhile."""
    check_alias_name(alias)
    candidate = read_version(client, address, version)
    current, etag = read_pointer(client, address, alias)
    if current is not None and current["version"] == version:
        return Promotion(None, [])
    shortfalls: list[str] = []
    if current is not None:
        try:
            shortfalls = gate_shortfalls(candidate, read_version(client, address, current["version"]))
        except S3Error:  # the alias points at a deleted version: nothing to compare with
            shortfalls = []
        if shortfalls and not force:
            raise PromotionRefused(
                f"{version} scores below {alias}'s current version {current['version']} on its gate: "
                f"{', '.join(shortfalls)}; promote a better version, or pass --force to move it anyway"
            )
    note = f" [forced past: {', '.join(shortfalls)}]" if shortfalls else ""
    record = move_alias(client, address, alias, version, by, (message or "promoted") + note, expected_etag=etag)
    return Promotion(record, shortfalls)


def rollback(
    client: S3Client, address: ModelAddress, alias: str, by: str | None = None, message: str = ""
) -> AliasRecord:
    """Move `alias` back to the version it pointed at before its last move (twice: forward again, like `cd -`)."""
    check_alias_name(alias)
    current, etag = read_pointer(client, address, alias)
    if current is None:
        raise AliasError(f"alias {alias!r} was never set at {address.uri()}/: nothing to roll back")
    previous = current.get("from_version")
    if previous is None:
        raise AliasError(
            f"alias {alias!r} has no previous version: {current['version']} was its first; promote another instead"
        )
    why = message or f"rollback from {current['version']}"
    return move_alias(client, address, alias, previous, by, why, expected_etag=etag)


@dataclass(frozen=True)
class CollectionPlan:
    delete: list[VersionInfo]
    kept: dict[str, list[str]] = field(default_factory=dict)  # version -> why it stays


def _protected(client: S3Client, address: ModelAddress, keep: int) -> dict[str, list[str]]:
    """version -> why gc keeps it: an alias (latest too) points at it, or one of an alias's last `keep` moves
    names it (as where the alias went or where it came from)."""
    reasons: dict[str, list[str]] = {}
    latest, _ = read_pointer(client, address, LATEST)
    if latest is not None:
        reasons.setdefault(latest["version"], []).append("latest")
    for alias, record in list_aliases(client, address).items():
        reasons.setdefault(record["version"], []).append(alias)
        recent = history(client, address, alias)[-keep:] if keep else []
        for move in recent:
            for version in (move["version"], move["from_version"]):
                if version is not None and alias not in reasons.get(version, []):
                    reasons.setdefault(version, []).append(f"{alias} history (move {move['move']})")
    return reasons


def plan_collection(client: S3Client, address: ModelAddress, keep: int) -> CollectionPlan:
    """Which complete versions gc would delete: those no alias and none of the last `keep` moves name.
    A folder without its manifest (a publish under way, or a delete cut short) is never touched."""
    if keep < 0:
        raise AliasError(f"--keep {keep}: must be 0 or more (moves of each alias's history to keep)")
    reasons = _protected(client, address, keep)
    versions = list_versions(client, address)
    return CollectionPlan(
        [info for info in versions if info.version not in reasons],
        {info.version: reasons[info.version] for info in versions if info.version in reasons},
    )


def collect(client: S3Client, address: ModelAddress, plan: CollectionPlan, keep: int) -> list[str]:
    """Delete the plan's versions, each manifest first; a version an alias took since the plan is spared."""
    protected = _protected(client, address, keep)
    deleted = []
    for info in plan.delete:
        if info.version not in protected:
            delete_version(client, address, info.version)
            deleted.append(info.version)
    return deleted
