"""The embedders: the packaged all-MiniLM-L6-v2 finds meaning (paraphrases close, unrelated
sentences far, close to sentence-transformers' own vectors) with vectors that do not depend on
batching; the hashing stand-in is deterministic everywhere."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.search.embeddings import (
    MODELS,
    PACKAGED_MODEL,
    HashingEmbedder,
    OnnxEmbedder,
    PackagedFile,
    load_embedder,
)

ROOT = Path(__file__).resolve().parents[2]

# sentence-transformers' all-MiniLM-L6-v2 (fp32) for "This is an example sentence", first six
# components; the packaged int8-weight file stays within a few thousandths of each.
REFERENCE = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448, 0.002653]

# (anchor, paraphrase, unrelated)
TRIPLES = [
    (
        "The test fails because the database port is already in use.",
        "The port for the database was taken, so the test broke.",
        "My grandmother bakes apple pie every Sunday.",
    ),
    (
        "We decided to keep SQLite as the default store for now.",
        "For the moment the embedded default stays SQLite.",
        "The football match was cancelled because of rain.",
    ),
    (
        "The user prefers short summaries at the end of each session.",
        "At the end of a session, keep the summary brief for this user.",
        "Rotate the tyres of the car every ten thousand kilometres.",
    ),
    ("How do I restart the Redis server?", "What is the way to reboot Redis?", "Penguins live in the south."),
    ("A man is playing a guitar.", "Someone plays an acoustic guitar.", "A chef is cooking pasta."),
]

VARIED = [
    "",
    "ok",
    "Fix the flaky test.",
    "Rotate the encryption key while writes go on, then check that every memory still reads.",
    "Ünïcödé, naïve café — 日本語のテキスト and an emoji 🚀",
    " ".join(f"word{i}" for i in range(120)),
    *(" ".join(sentence) for sentence in TRIPLES),
]


@pytest.fixture(scope="module")
def minilm() -> OnnxEmbedder:
    return load_embedder(PACKAGED_MODEL)


def assert_unit_rows(vectors: np.ndarray, rows: int, dimensions: int) -> None:
    assert vectors.shape == (rows, dimensions)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_model_id_names_the_packaged_file(minilm: OnnxEmbedder) -> None:
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2@8199be6f699a"
    assert minilm.dimensions == 384


def test_vectors_are_unit_float32_rows_in_order(minilm: OnnxEmbedder) -> None:
    vectors = minilm.embed(VARIED)
    assert_unit_rows(vectors, len(VARIED), 384)
    assert minilm.embed([]).shape == (0, 384)


def test_close_to_sentence_transformers_own_vector(minilm: OnnxEmbedder) -> None:
    vector = minilm.embed(["This is an example sentence"])[0]
    np.testing.assert_allclose(vector[: len(REFERENCE)], REFERENCE, atol=0.005)


@pytest.mark.parametrize(("anchor", "paraphrase", "unrelated"), TRIPLES)
def test_paraphrases_are_closer_than_unrelated_sentences(
    minilm: OnnxEmbedder, anchor: str, paraphrase: str, unrelated: str
) -> None:
    a, p, u = minilm.embed([anchor, paraphrase, unrelated])
    assert float(a @ p) > 0.6
    assert float(a @ u) < 0.3
    assert float(a @ p) - float(a @ u) > 0.4


def test_same_text_same_vector_across_calls_and_loads(minilm: OnnxEmbedder) -> None:
    again = load_embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert again.model_id == minilm.model_id
    np.testing.assert_array_equal(minilm.embed(VARIED), minilm.embed(VARIED))
    np.testing.assert_array_equal(minilm.embed(VARIED), again.embed(VARIED))


def test_a_vector_does_not_depend_on_its_batch(minilm: OnnxEmbedder) -> None:
    texts = VARIED * 3  # more than one batch of mixed lengths
    batched = minilm.embed(texts)
    one_by_one = np.stack([minilm.embed([text])[0] for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_threads_may_embed_at_once(minilm: OnnxEmbedder) -> None:
    expected = minilm.embed(VARIED)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(minilm.embed, [VARIED] * 8))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_empty_text_has_a_vector(minilm: OnnxEmbedder) -> None:
    empty, other = minilm.embed(["", "Deploy the service on port 8678."])
    assert_unit_rows(np.stack([empty]), 1, 384)
    assert float(empty @ other) < 0.99


def test_long_text_is_truncated_to_the_model_length(minilm: OnnxEmbedder) -> None:
    long_text = " ".join(f"token{i} of a very long session transcript" for i in range(2000))
    head, with_tail = minilm.embed([long_text, long_text + " and a different ending entirely"])
    assert_unit_rows(np.stack([head, with_tail]), 2, 384)
    # Both are cut at the same 256 tokens, so the extra ending cannot change the vector.
    np.testing.assert_allclose(head, with_tail, atol=1e-6)


def test_non_ascii_text_keeps_its_meaning(minilm: OnnxEmbedder) -> None:
    accented, plain, other = minilm.embed(
        ["Le café est fermé le dimanche.", "Le cafe est ferme le dimanche.", "日本語のテキスト"]
    )
    assert float(accented @ plain) > 0.9  # the tokenizer strips accents as the model expects
    assert float(accented @ other) < float(accented @ plain)


def test_an_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_embedder("bert-large-who-knows")
    assert "bert-large-who-knows" in raised.value.message
    for name in MODELS:
        assert name in raised.value.message


def test_a_packaged_file_is_checked_against_its_hash() -> None:
    pinned = MODELS[PACKAGED_MODEL].onnx
    assert pinned.locate().is_file()
    swapped = PackagedFile(pinned.distribution, pinned.path, "0" * 64)
    with pytest.raises(ConfigurationError, match="differs from the pinned file"):
        swapped.locate()
    with pytest.raises(ConfigurationError, match="is missing from"):
        PackagedFile(pinned.distribution, "no/such/model.onnx", pinned.sha256).locate()
    with pytest.raises(ConfigurationError, match="install it"):
        PackagedFile("no-such-distribution-xyz", pinned.path, pinned.sha256).locate()


def test_hashing_embedder_shape_and_norm() -> None:
    hashing = HashingEmbedder(dimensions=32)
    assert hashing.model_id == "hashing-test-only/32"
    vectors = hashing.embed(VARIED)
    assert_unit_rows(vectors, len(VARIED), 32)
    assert hashing.embed([]).shape == (0, 32)


def test_hashing_embedder_scores_shared_words() -> None:
    query, overlap, disjoint = HashingEmbedder().embed(
        ["rotate the encryption key", "key rotation: rotate the encryption key nightly", "penguins swim"]
    )
    assert float(query @ overlap) > float(query @ disjoint)
    assert float(query @ overlap) > 0.6


def test_hashing_embedder_is_the_same_in_another_process() -> None:
    texts = ["Rotate the key", "", "日本語"]
    script = (
        "import sys\n"
        "from mahavishnu.platform.search.embeddings import HashingEmbedder\n"
        f"sys.stdout.write(HashingEmbedder().embed({texts!r}).tobytes().hex())\n"
    )
    env = {"PYTHONHASHSEED": "12345"}  # str hashing differs there; blake2b must not
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60, env=env, cwd=ROOT
    )
    here = HashingEmbedder().embed(texts)
    assert bytes.fromhex(result.stdout.decode()) == here.tobytes()
