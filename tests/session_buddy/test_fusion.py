"""The parts of hybrid ranking that need no store: finding a question's anchor words, the rest of
the question, the anchored score and near-duplicates giving way (the store's side is in
test_search.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mahavishnu.platform.search.fusion import anchors, fuse_anchored, give_way_to_near_duplicates, rest_of
from mahavishnu.platform.search.terms import content_words


def test_content_words_leave_out_stop_words_but_keep_identifiers_in_order() -> None:
    assert content_words("Why do the billing pods keep restarting?") == [
        "billing",
        "pods",
        "keep",
        "restarting",
    ]
    assert content_words("what is E4012 in src/auth/tokens.py") == [
        "e4012",
        "src/auth/tokens.py",
        "src",
        "auth",
        "tokens",
        "py",
    ]
    assert content_words("what is it") == []


def test_a_word_most_nearest_memories_hold_is_an_anchor() -> None:
    words = {"billing": b"B", "pods": b"P", "restarting": b"R"}
    nearest = [{b"B"}, {b"B", b"P"}, {b"B"}, {b"X"}]
    assert anchors(words, nearest) == ["billing"]  # 3 of 4; "pods" only 1 of 4
    assert anchors(words, [{b"B"}, {b"P"}]) == ["billing", "pods"]  # half is enough
    assert anchors(words, []) == []


def test_the_rest_of_a_question_drops_the_anchor_words_however_written() -> None:
    assert rest_of("Why do billing's pods keep restarting?", ["billing"]) == "Why do pods keep restarting?"
    assert rest_of("(Billing) pods?", ["billing"]) == "pods?"
    assert rest_of("what is billing now?", ["billing"]) is None  # only stop words left
    assert rest_of("billing pods", ["billing", "pods"]) is None


def test_holding_the_anchor_outweighs_a_little_more_meaning() -> None:
    held = {"answer": {b"B"}, "chatter": {b"B"}, "other": set()}
    rest = {"answer": 0.60, "chatter": 0.20, "other": 0.65}  # other service, same subject
    whole = {"answer": 0.40, "chatter": 0.55, "other": 0.50}
    ranked = fuse_anchored(["answer", "chatter", "other"], held, [b"B"], rest, whole)
    assert [i for i, _ in ranked] == ["answer", "chatter", "other"]
    # without vectors (not embedded yet) a memory holding the anchor still counts
    cosines = {"best": 0.9, "other": 0.6, "low": 0.3}
    held = {"best": {b"B"}, "late": {b"B"}}
    ranked = fuse_anchored(["late", "other", "best", "low"], held, [b"B"], cosines, cosines)
    assert [i for i, _ in ranked] == ["best", "late", "other", "low"]


def test_near_duplicates_of_a_better_candidate_give_way() -> None:
    note = {b"deploy", b"note", b"rollout", b"of", b"the", b"gateway", b"finished", b"in", b"minutes"}
    held = {
        "four": note | {b"4"},
        "five": note | {b"5"},
        "distinct": {b"gateway", b"rollout", b"postponed", b"certificate", b"expired"},
    }
    ranked = [("four", 0.9), ("five", 0.88), ("distinct", 0.7), ("unknown", 0.6)]
    assert give_way_to_near_duplicates(ranked, held) == [
        ("four", 0.9),
        ("distinct", 0.7),
        ("unknown", 0.6),  # no tokens given: never compared
        ("five", 0.44),
    ]
    # sharing fewer than 80 % of their words: both stay where they were
    held["five"] = {b"deploy", b"note", b"rollout", b"gateway", b"failed", b"again", b"at", b"noon"}
    assert give_way_to_near_duplicates(ranked, held) == ranked


tokens = st.sampled_from([b"w1", b"w2", b"w3", b"w4", b"w5"])
candidate_words = st.dictionaries(st.sampled_from("abcdefgh"), st.frozensets(tokens, min_size=1))


@given(candidate_words, st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8))
def test_giving_way_only_lowers_scores_and_never_the_best(
    held: dict[str, frozenset[bytes]], values: list[float]
) -> None:
    ranked = sorted(zip("abcdefgh", values, strict=True), key=lambda item: (item[1], item[0]), reverse=True)
    after = dict(give_way_to_near_duplicates(ranked, held))
    assert after.keys() == dict(ranked).keys()
    for memory_id, score in ranked:
        assert after[memory_id] in (score, score / 2)
    assert after[ranked[0][0]] == ranked[0][1]
