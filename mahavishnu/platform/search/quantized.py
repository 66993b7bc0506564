"""The packaged model with int8 arithmetic, made here from the packaged file: nothing is
downloaded, and the result is pinned by its sha256 like a shipped file.

The packaged ONNX file keeps int8 weights but computes in fp32. onnxruntime's dynamic
quantization (per-channel int8 weights, int8 matrix products) runs it about twice as fast per
CPU-second on this machine's class of CPU (bench/embedding_speed.py), with vectors at cosine
0.99 of the fp32 ones. It scales activations per run, so a text must be run alone for its
vector to depend on it only: the embedder made from this file runs one text per call
(`batch_size=1`) and spreads the calls over threads instead.

The file is made once into a cache folder (the service's data folder), in a temporary file
renamed into place, so two processes starting together both end with one whole file; a file
that does not match the pin (another onnx or onnxruntime version made it, or it was changed)
is made again, and refused if it still differs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mahavishnu.platform.errors import ConfigurationError

__all__ = ["file_sha256", "int8_model"]

_MAKE_TIMEOUT_SECONDS = 600


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def int8_model(source: Path, cache: Path, *, sha256: str) -> Path:
    """The int8 file made from `source` in `cache`, matching `sha256` (made when missing)."""
    target = cache / f"{sha256[:16]}.int8.onnx"
    if target.is_file() and file_sha256(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".making-") as work:
        made = _quantize_in_child(source, Path(work))
        found = file_sha256(made)
        if found != sha256:
            raise ConfigurationError(
                f"the int8 model made from {source.name} differs from the pinned one ({found[:12]}, "
                f"expected {sha256[:12]}): reinstall the pinned onnx and onnxruntime"
            )
        os.replace(made, target)
    return target


def _quantize_in_child(source: Path, work: Path) -> Path:
    """`_quantize` in a child process: it is seconds of pure-Python graph work, and in a thread
    of the serving process it would hold the GIL and keep the event loop from answering."""
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu.platform.search.quantized", str(source), str(work)],
        capture_output=True,
        text=True,
        timeout=_MAKE_TIMEOUT_SECONDS,
        check=False,
    )
    made = work / "int8.onnx"
    if done.returncode != 0 or not made.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigurationError(f"could not make the int8 model from {source.name}: {last}")
    return made


def _quantize(source: Path, work: Path) -> Path:
    """onnxruntime's basic graph clean-up (folds the weights' dequantization into fp32
    constants), then dynamic int8 quantization of every MatMul, per channel."""
    import onnxruntime as ort  # type: ignore[import-untyped]  # no type hints shipped
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(work / "fp32.onnx")
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    quantized = work / "int8.onnx"
    quantize_dynamic(work / "fp32.onnx", quantized, weight_type=QuantType.QInt8, per_channel=True)
    return quantized


if __name__ == "__main__":  # the child `_quantize_in_child` runs: SOURCE WORK_FOLDER
    _quantize(Path(sys.argv[1]), Path(sys.argv[2]))
