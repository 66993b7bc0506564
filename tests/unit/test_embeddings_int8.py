"""The int8 variant of the packaged model: made here from the packaged file (nothing is
downloaded), pinned by its hash, made once per cache folder, remade when the cached file was
changed; its vectors depend on their text only, stay close to the fp32 model's and keep its
sense of meaning."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.search import quantized
from mahavishnu.platform.search.embeddings import (
    DEFAULT_MODEL,
    MODELS,
    PACKAGED_MODEL,
    OnnxEmbedder,
    load_embedder,
)
from tests.unit.test_embeddings import TRIPLES, VARIED

INT8 = DEFAULT_MODEL


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def int8(cache: Path) -> OnnxEmbedder:
    return load_embedder(INT8, cache=cache)


def test_made_once_into_the_cache_and_pinned(int8: OnnxEmbedder, cache: Path) -> None:
    (made,) = cache.glob("*.int8.onnx")
    assert int8.model_id == f"{MODELS[INT8].name}@{MODELS[INT8].int8_sha256[:12]}"  # type: ignore[index]
    assert int8.model_id != load_embedder(PACKAGED_MODEL).model_id  # never compared with fp32 vectors
    before = made.stat().st_mtime_ns
    load_embedder(INT8, cache=cache)
    assert made.stat().st_mtime_ns == before  # found, not made again
    assert not [p for p in cache.iterdir() if p.name.startswith(".making-")]


def test_a_changed_cached_file_is_made_again(tmp_path: Path) -> None:
    load_embedder(INT8, cache=tmp_path)
    (made,) = tmp_path.glob("*.int8.onnx")
    made.write_bytes(made.read_bytes()[:-1] + b"\0")
    load_embedder(INT8, cache=tmp_path)
    assert quantized.file_sha256(made) == MODELS[INT8].int8_sha256


def test_a_file_that_differs_from_the_pin_is_refused(tmp_path: Path) -> None:
    source = MODELS[PACKAGED_MODEL].onnx.locate()
    with pytest.raises(ConfigurationError, match="differs from the pinned one"):
        quantized.int8_model(source, tmp_path, sha256="0" * 64)
    assert not list(tmp_path.glob("*.onnx"))


def test_a_vector_depends_on_its_text_only(int8: OnnxEmbedder) -> None:
    together = int8.embed(VARIED)
    alone = np.stack([int8.embed([text])[0] for text in VARIED])
    assert np.array_equal(together, alone)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_close_to_fp32_and_finds_paraphrases(int8: OnnxEmbedder) -> None:
    fp32 = load_embedder(PACKAGED_MODEL)
    texts = [t for triple in TRIPLES for t in triple]
    cosines = (int8.embed(texts) * fp32.embed(texts)).sum(axis=1)
    assert cosines.min() > 0.97
    for anchor, paraphrase, unrelated in TRIPLES:
        a, p, u = int8.embed([anchor, paraphrase, unrelated])
        assert float(a @ p) > float(a @ u) + 0.2


def test_the_cache_folder_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    load_embedder(INT8, cache=folder)
    assert os.stat(folder).st_mode & 0o077 == 0
