"""Verified-byte accounting: credit on hash pass, never more than a piece, none on failure."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdist.swarm._accounting import BLOCK, VerifiedBytes

PIECE = 4 * BLOCK


def test_blocks_are_credited_only_when_their_piece_passes() -> None:
    v = VerifiedBytes()
    for b in range(4):
        v.delivered(0, b, "a")
    assert v.totals() == {}
    v.piece_passed(0, PIECE)
    assert v.totals() == {"a": PIECE}


def test_failed_piece_earns_nothing_and_the_redownload_is_credited_once() -> None:
    v = VerifiedBytes()
    for b in range(4):
        v.delivered(0, b, "liar")
    v.piece_failed(0)
    for b in range(4):
        v.delivered(0, b, "honest")
    v.piece_passed(0, PIECE)
    assert v.totals() == {"honest": PIECE}


def test_block_without_delivery_report_falls_back_to_the_peer_asked() -> None:
    v = VerifiedBytes()
    for b in range(4):
        v.requested(0, b, "a")
    v.delivered(0, 0, "b")  # end-game: b answered first for block 0
    v.piece_passed(0, PIECE)
    assert v.totals() == {"a": 3 * BLOCK, "b": BLOCK}


def test_delivery_reported_after_the_hash_check_is_not_counted_twice() -> None:
    v = VerifiedBytes()
    for b in range(4):
        v.requested(0, b, "a")
    v.piece_passed(0, PIECE)
    for b in range(4):
        v.delivered(0, b, "a")  # trailing reports of the same blocks
    assert v.totals() == {"a": PIECE}


def test_short_last_piece_is_credited_its_own_size() -> None:
    v = VerifiedBytes()
    v.requested(7, 0, "a")
    v.requested(7, 1, "a")
    v.piece_passed(7, BLOCK + 100)
    assert v.totals() == {"a": BLOCK + 100}


def test_end_game_block_goes_to_the_peer_whose_report_trails_the_hash_check() -> None:
    v = VerifiedBytes()
    v.requested(0, 0, "honest")
    v.requested(0, 0, "liar")  # end-game: asked twice, the honest peer answered
    v.piece_passed(0, BLOCK)  # libtorrent hashed it before reporting the write
    assert v.totals() == {}
    v.delivered(0, 0, "honest")
    v.delivered(0, 0, "liar")  # nothing more for a block already credited
    assert v.totals() == {"honest": BLOCK}


def test_a_failed_attempt_report_that_comes_late_earns_nothing() -> None:
    v = VerifiedBytes()
    v.requested(0, 0, "liar")
    v.piece_failed(0)
    v.delivered(0, 0, "liar")  # the failed attempt's write, reported after the failure
    v.requested(0, 0, "honest")
    v.delivered(0, 0, "honest")
    v.piece_passed(0, BLOCK)
    assert v.totals() == {"honest": BLOCK}


def test_a_request_left_over_from_a_failed_attempt_may_deliver_the_next() -> None:
    v = VerifiedBytes()
    v.requested(0, 0, "honest")
    v.requested(0, 0, "liar")
    v.delivered(0, 0, "liar")
    v.piece_failed(0)  # the honest copy was still on its way: it fills the next attempt
    v.piece_passed(0, BLOCK)
    assert v.totals() == {"honest": BLOCK}


def test_settle_gives_unreported_blocks_to_the_peer_that_sent_most() -> None:
    v = VerifiedBytes()
    for b in range(4):
        v.requested(0, b, "honest")
    v.piece_passed(0, PIECE)
    v.requested(1, 0, "honest")
    v.requested(1, 0, "liar")
    v.piece_passed(1, BLOCK)  # its report never comes: the download completed
    assert not v.settled
    v.settle()
    assert v.settled
    assert v.totals() == {"honest": PIECE + BLOCK}


def test_settle_gives_an_unreported_block_to_the_candidate_whose_bytes_are_not_all_credited(
) -> None:
    # End game in a swarm: the last block was asked of the seed (which sent this fan the
    # most) and of another fan; the other fan answered and the seed's request was
    # cancelled. Every byte the seed sent is credited already: it did not send the block,
    # and a receipt crediting it would claim more than the seed uploaded.
    v = VerifiedBytes()
    for b in range(4):
        v.requested(0, b, "seed")
        v.delivered(0, b, "seed")
    v.piece_passed(0, PIECE)
    v.requested(1, 0, "seed")
    v.requested(1, 0, "fan")
    v.piece_passed(1, BLOCK)  # its report never comes: the download completed
    v.settle(received={"seed": PIECE, "fan": BLOCK})
    assert v.totals() == {"seed": PIECE, "fan": BLOCK}


def test_settle_prefers_the_most_verified_of_the_candidates_that_sent_spare_bytes() -> None:
    # A liar's corrupt piece left it bytes that were never credited; the honest peer sent
    # the two waiting blocks: of the two candidates with spare bytes, the one that sent
    # verified data gets them.
    v = VerifiedBytes()
    for b in range(4):
        v.delivered(0, b, "liar")
    v.piece_failed(0)
    for b in range(4):
        v.delivered(0, b, "honest")
    v.piece_passed(0, PIECE)
    v.requested(1, 0, "liar")
    v.requested(1, 0, "honest")
    v.requested(2, 0, "liar")
    v.requested(2, 0, "honest")
    v.piece_passed(1, BLOCK)
    v.piece_passed(2, BLOCK)
    v.settle(received={"liar": PIECE, "honest": PIECE + 2 * BLOCK})
    assert v.totals() == {"honest": PIECE + 2 * BLOCK}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["req", "del", "pass", "fail"]),
                          st.integers(0, 3), st.integers(0, 3), st.sampled_from("abc")),
                max_size=80))
def test_credit_never_exceeds_the_size_of_the_pieces_that_passed(
    events: list[tuple[str, int, int, str]],
) -> None:
    v = VerifiedBytes()
    passes = 0
    for kind, piece, block, peer in events:
        if kind == "req":
            v.requested(piece, block, peer)
        elif kind == "del":
            v.delivered(piece, block, peer)
        elif kind == "pass":
            v.piece_passed(piece, PIECE)
            passes += 1
        else:
            v.piece_failed(piece)
    assert sum(v.totals().values()) <= passes * PIECE
    v.settle()
    assert sum(v.totals().values()) <= passes * PIECE


# -- upload accounting (swarm/_session.py's _Sent) ----------------------------------------


def test_sent_bytes_are_exact_while_polled_and_the_tail_after_counts_whole_blocks() -> None:
    from p2pdist.swarm._session import _Sent

    s = _Sent()
    s.polled(1_000_000, 2_000_000, now=10.0)  # exact, as libtorrent counted them
    assert s.total() == 1_000_000
    for _ in range(4):  # the peer leaves before the next poll: its last blocks count
        s.block_sent(now=10.2)
    assert s.total() == 1_000_000 + 4 * BLOCK
    s.polled(1_070_000, 2_000_000, now=10.5)  # polled again: exact once more
    assert s.total() == 1_070_000


def test_a_peer_asking_a_byte_at_a_time_cannot_make_the_block_tail_count_for_more() -> None:
    # Each request of one byte is one 'block placed in the send buffer' for libtorrent:
    # 10,000 of them are 10,000 bytes, not 160 MB. The tail past the last poll counts at
    # most what the rate seen then could carry (plus two blocks).
    from p2pdist.swarm._session import _Sent

    s = _Sent()
    s.polled(5_000, 2_000, now=0.0)  # 2 kB/s: a trickle of single bytes
    for _ in range(10_000):
        s.block_sent(now=0.4)
    assert s.total() <= 5_000 + 2 * BLOCK + 2_000 * 1.4
