"""The retention policy behind ``flchain store gc --task``: pure, no chain and no store."""

from __future__ import annotations

import pytest

from flchain.errors import ConfigError
from flchain.storage import cid_for
from flchain.storage.retention import RoundContent, plan
from flchain.storage.unixfs import parse_cid, root_cid


def c(name: str) -> str:
    return cid_for(name.encode())


MANIFEST, INITIAL = c("manifest"), c("initial")


def history(closed: int, open_rounds: int = 1) -> list[RoundContent]:
    """``closed`` finalized rounds, then ``open_rounds`` rounds with reveals only."""
    rounds = [
        RoundContent(r, (c(f"u{r}a"), c(f"u{r}b")), c(f"m{r}"), c(f"r{r}"), closed=True)
        for r in range(closed)
    ]
    rounds += [RoundContent(r, (c(f"u{r}a"),)) for r in range(closed, closed + open_rounds)]
    return rounds


def everything(rounds: list[RoundContent]) -> list[str]:
    out = [MANIFEST, INITIAL]
    for r in rounds:
        out += [*r.updates, *(x for x in (r.model, r.report) if x)]
    return out


def test_keeps_open_rounds_the_retention_window_and_the_newest_model() -> None:
    rounds = history(closed=5)
    decided = plan(everything(rounds), rounds, [MANIFEST, INITIAL], retention=2)
    # Rounds 0-2 are past retention (3 and 4 are the two newest closed rounds; 5 is open).
    assert set(decided.unpin) == {c(f"{k}{r}{s}") for r in range(3) for k, s in
                                  [("u", "a"), ("u", "b"), ("m", ""), ("r", "")]}  # fmt: skip
    assert set(decided.keep) == set(everything(rounds)) - set(decided.unpin)
    assert {MANIFEST, INITIAL, c("u5a"), c("m4"), c("r4"), c("u3a")} <= set(decided.keep)


def test_retention_zero_keeps_only_the_newest_model_and_open_rounds() -> None:
    rounds = history(closed=3)
    decided = plan(everything(rounds), rounds, [MANIFEST, INITIAL], retention=0)
    assert set(decided.keep) == {MANIFEST, INITIAL, c("m2"), c("r2"), c("u3a")}


def test_an_expired_round_closes_without_a_model() -> None:
    rounds = [*history(closed=1, open_rounds=0), RoundContent(1, (c("u1a"),), closed=True)]
    decided = plan(everything(rounds), rounds, [], retention=0)
    assert set(decided.unpin) == {c("u0a"), c("u0b"), c("u1a")}
    assert set(decided.keep) == {c("m0"), c("r0")}  # still the newest model


def test_pins_the_task_never_named_are_left_alone() -> None:
    rounds = history(closed=4)
    mine = c("somebody else's file")
    decided = plan([mine, *everything(rounds)], rounds, [], retention=0)
    assert mine not in decided.unpin and mine not in decided.keep


def test_cid_versions_name_the_same_pin() -> None:
    rounds = history(closed=3)
    v1 = root_cid(parse_cid(c("u0a")), 1)
    assert v1 != c("u0a")
    decided = plan([v1, root_cid(parse_cid(c("m2")), 1)], rounds, [], retention=0)
    assert decided.unpin == [v1]


def test_nothing_is_past_retention_in_a_young_task() -> None:
    rounds = history(closed=2)
    assert plan(everything(rounds), rounds, [], retention=2).unpin == []


def test_negative_retention_is_refused() -> None:
    with pytest.raises(ConfigError, match="retention"):
        plan([], [], [], retention=-1)


def test_server_optimizer_states_follow_their_rounds() -> None:
    """A task with a server optimizer: each report names a state blob, kept like the model."""
    rounds = [
        RoundContent(r, (c(f"u{r}a"),), c(f"m{r}"), c(f"r{r}"), closed=True, state=c(f"s{r}"))
        for r in range(4)
    ]
    rounds.append(RoundContent(4, (c("u4a"),), closed=True))  # expired: the state stays
    pinned = everything(rounds) + [c(f"s{r}") for r in range(4)]
    decided = plan(pinned, rounds, [MANIFEST, INITIAL], retention=1)
    assert {c("s0"), c("s1"), c("s2")} <= set(decided.unpin)
    assert {c("m3"), c("r3"), c("s3")} <= set(decided.keep)  # the next round steps from them
