"""`max_tokens` bounds a search answer: the hits that do not fit come on the next page (none
skipped, none repeated), and a first hit too long alone is cut and marked `truncated`."""

from __future__ import annotations

from mahavishnu.session_buddy.memories import Filters, Memories, NewMemory
from mahavishnu.session_buddy.memory_search import HIT_TOKENS, TOKEN_CHARS


async def test_pages_within_the_budget_cover_every_hit_once(memories: Memories) -> None:
    stored = set()
    for n in range(5):
        text = f"budget note {n}: " + " ".join(f"filler{n}x{i}" for i in range(40))  # ~480 chars
        stored.add((await memories.store(NewMemory(text))).memory.id)
    one_hit = HIT_TOKENS + 480 // TOKEN_CHARS + 20  # room for one hit, not two
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await memories.search(
            "budget", Filters(), mode="keyword", limit=5, cursor=cursor, max_tokens=one_hit
        )
        assert len(page.hits) == 1
        assert not page.hits[0].truncated
        seen.append(page.hits[0].memory.id)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(stored)
    whole = await memories.search("budget", Filters(), mode="keyword", limit=5)
    assert [h.memory.id for h in whole.hits] == seen  # the same order, in pages of one


async def test_a_first_hit_too_long_is_cut_and_marked(memories: Memories) -> None:
    long_text = "overflow " + "x" * 1900
    await memories.store(NewMemory(long_text))
    page = await memories.search("overflow", Filters(), mode="keyword", max_tokens=150)
    (hit,) = page.hits
    assert hit.truncated
    assert hit.memory.content == long_text[: (150 - HIT_TOKENS) * TOKEN_CHARS]
    assert (await memories.get(hit.memory.id)).content == long_text  # the memory is whole
    roomy = await memories.search("overflow", Filters(), mode="keyword", max_tokens=10_000)
    assert not roomy.hits[0].truncated
