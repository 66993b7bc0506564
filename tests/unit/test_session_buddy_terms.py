"""Properties of the words keyword search cuts texts into (stores and queries alike)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from mahavishnu.platform.search.terms import (
    MAX_TERMS,
    MAX_WORD_CHARS,
    STOP_WORDS,
    content_words,
    normalise,
    terms,
)

plain_words = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=20)
identifier_parts = st.lists(plain_words, min_size=2, max_size=4)


@given(st.text(max_size=500))
def test_cutting_is_the_same_before_and_after_normalising(text: str) -> None:
    assert terms(text) == terms(normalise(text))


@given(st.text(max_size=2000))
def test_every_word_is_bounded_and_trimmed(text: str) -> None:
    found = terms(text)
    assert len(found) <= MAX_TERMS
    for word in found:
        assert 0 < len(word) <= MAX_WORD_CHARS
        assert not any(c.isspace() for c in word)
        assert word[0] not in "./:-_"
        assert word[-1] not in "./:-_"
        assert found[word] >= 1


@given(st.lists(plain_words, min_size=1, max_size=30))
def test_every_plain_word_of_a_text_is_found_whatever_its_case(words: list[str]) -> None:
    found = terms(" ".join(w.upper() for w in words) + ".")
    for word in words:
        assert word.casefold() in found


@given(identifier_parts, st.sampled_from(["/", ".", "::", "-", "_"]))
def test_an_identifier_is_found_whole_and_by_its_parts(parts: list[str], joint: str) -> None:
    identifier = joint.join(parts)
    found = terms(f"fails in {identifier} again")
    assert identifier.casefold() in found
    for part in parts:
        assert part.casefold() in found


@given(st.text(max_size=500))
def test_content_words_are_the_words_but_stop_words_once_each(text: str) -> None:
    found = content_words(text)
    assert len(found) == len(set(found))
    assert set(found) == set(terms(text)) - STOP_WORDS


def test_full_width_and_case_do_not_matter() -> None:
    assert set(terms("\uff25\uff11\uff12\uff13\uff14")) == set(terms("e1234")) == {"e1234"}
