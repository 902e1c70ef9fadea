"""Aliases against the real SeaweedFS: conditional reads, conditional moves, two promoters at once, history."""

from __future__ import annotations

import json
import threading

import pytest

from posevit.publish.aliases import (
    AliasConflict,
    AliasError,
    history,
    history_key,
    list_aliases,
    move_alias,
    pointer_key,
    read_pointer,
)
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.test_registry import version_files


@pytest.fixture
def address(bucket) -> ModelAddress:
    return ModelAddress(bucket, "registry/team", "posevit")


@pytest.fixture
def two_versions(aws_env, address, tmp_path) -> tuple[str, str]:
    client = make_client()
    published = []
    for seed in (0, 1):
        version, files = version_files(tmp_path, seed=seed)
        publish(client, address, version, files, progress=False)
        published.append(version)
    return published[0], published[1]


def test_read_pointer_tells_changed_unchanged_and_missing_apart(aws_env, address, two_versions):
    client = make_client()
    first, second = two_versions
    assert read_pointer(client, address, "production") == (None, None)  # missing
    latest, latest_etag = read_pointer(client, address, "latest")
    assert latest["version"] == second and latest_etag

    moved = move_alias(client, address, "production", first, by="ana", message="first release")
    record, etag = read_pointer(client, address, "production")
    assert record == moved and etag
    assert set(record) >= {"format", "alias", "version", "moved_at", "by", "message"}
    assert (record["alias"], record["version"], record["by"], record["message"]) == (
        "production",
        first,
        "ana",
        "first release",
    )
    assert read_pointer(client, address, "production", etag) == (None, etag)  # unchanged: a 304, no body

    move_alias(client, address, "production", second, by="ana", expected_etag=etag)
    changed, new_etag = read_pointer(client, address, "production", etag)
    assert changed["version"] == second and new_etag != etag
    key = pointer_key(address, "production")
    assert key == "registry/team/posevit/aliases/production.json"
    assert json.loads(client.get_object(Bucket=address.bucket, Key=key)["Body"].read())["version"] == second


def test_a_stale_etag_or_a_second_create_is_refused_and_nothing_is_written(aws_env, address, two_versions):
    client = make_client()
    first, second = two_versions
    move_alias(client, address, "staging", first, by="ana")
    with pytest.raises(AliasConflict, match=r"alias 'staging' changed .*ana moved it to \w+ .*nothing was written"):
        move_alias(client, address, "staging", second, by="bo")  # bo thought it did not exist yet
    _, etag = read_pointer(client, address, "staging")
    move_alias(client, address, "staging", second, by="ana", expected_etag=etag)
    with pytest.raises(AliasConflict, match="ana moved it to"):
        move_alias(client, address, "staging", first, by="bo", expected_etag=etag)  # read before ana's move
    assert [m["version"] for m in history(client, address, "staging")] == [first, second]


def test_bad_names_and_unpublished_versions_are_refused(aws_env, address, two_versions):
    client = make_client()
    first, _ = two_versions
    for bad in ("Production", "1st", "prod_1", "", "a/b"):
        with pytest.raises(AliasError, match="not a valid name"):
            move_alias(client, address, bad, first)
    with pytest.raises(AliasError, match="'latest' is built in"):
        move_alias(client, address, "latest", first)
    with pytest.raises(AliasError, match="not a complete published version"):
        move_alias(client, address, "production", "0" * 16)
    assert list_aliases(client, address) == {}


def promote_at_once(address, promoters: list[tuple[str, str]], etag: str | None, message: str) -> dict[str, str]:
    """Each (who, version) moves `production` from `etag` in its own thread and client, all at the same instant:
    who -> "won" or the conflict's message."""
    start = threading.Barrier(len(promoters))
    outcomes: dict[str, str] = {}

    def promote(who: str, client, version: str) -> None:
        start.wait()
        try:
            move_alias(client, address, "production", version, by=who, message=message, expected_etag=etag)
            outcomes[who] = "won"
        except AliasConflict as exc:
            outcomes[who] = str(exc)

    threads = [threading.Thread(target=promote, args=(who, make_client(), version)) for who, version in promoters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_concurrent_promoters_exactly_one_wins_and_history_keeps_every_move(aws_env, address, two_versions):
    """Rounds of two promoters who read the alias, then both move it at the same instant from what they read."""
    first, second = two_versions
    client = make_client()
    rounds = 4
    winners: list[str] = []
    for round_number in range(rounds):
        _, etag = read_pointer(client, address, "production")
        outcomes = promote_at_once(address, [("ana", first), ("bo", second)], etag, f"round {round_number}")
        won = [who for who, outcome in outcomes.items() if outcome == "won"]
        assert len(won) == 1, outcomes
        loser = next(who for who in outcomes if who not in won)
        assert f"{won[0]} moved it to" in outcomes[loser] and "nothing was written" in outcomes[loser]
        winners.append(won[0])

    moves = history(client, address, "production")
    assert [m["by"] for m in moves] == winners and [m["move"] for m in moves] == list(range(1, rounds + 1))
    assert [m["message"] for m in moves] == [f"round {n}" for n in range(rounds)]
    assert moves[0]["from_version"] is None
    assert all(later["from_version"] == earlier["version"] for earlier, later in zip(moves, moves[1:], strict=False))


def test_a_mover_killed_before_its_history_object_loses_no_move(aws_env, address, two_versions):
    client = make_client()
    first, second = two_versions
    move_alias(client, address, "production", first, by="ana")
    _, etag = read_pointer(client, address, "production")
    move_alias(client, address, "production", second, by="bo", expected_etag=etag)
    client.delete_object(Bucket=address.bucket, Key=history_key(address, "production", 2))  # as if killed there
    assert [m["by"] for m in history(client, address, "production")] == ["ana", "bo"]  # the pointer fills in
    _, etag = read_pointer(client, address, "production")
    move_alias(client, address, "production", first, by="cy", expected_etag=etag)
    stored = client.list_objects_v2(Bucket=address.bucket, Prefix=address.key("aliases", "production.history"))
    assert len(stored["Contents"]) == 3  # the next move wrote bo's history object back
    assert [m["by"] for m in history(client, address, "production")] == ["ana", "bo", "cy"]
    assert set(list_aliases(client, address)) == {"production"}

    client.delete_object(Bucket=address.bucket, Key=pointer_key(address, "production"))  # removed by hand
    assert move_alias(client, address, "production", second, by="di")["move"] == 4  # its history goes on
    assert [m["by"] for m in history(client, address, "production")] == ["ana", "bo", "cy", "di"]
