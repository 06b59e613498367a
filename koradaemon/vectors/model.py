"""Loading the embedding model that ships inside the ``wordllama`` wheel, offline.

``wordllama`` 0.4 ships the 256-dimensional ``l2_supercat`` weights under
``wordllama/weights/`` and their tokenizer under ``wordllama/tokenizers/``. Its own
``WordLlama.load()`` looks for the tokenizer under ``wordllama/tokenizer/`` (singular)
and, not finding it, would download it. We lay out a cache folder exactly as its loader
expects (``tokenizers/`` + ``weights/``, links to the shipped files) and read the files
from there; ``WordLlama.load(cache_dir=..., disable_download=True)`` accepts the same
folder (see :func:`load_via_wordllama`, used by the tests to check both agree).

The daemon reads the two files itself rather than through ``WordLlama.load``: importing
the ``wordllama`` package pulls in pydantic and requests (about 40 MB more memory) and
calls ``logging.basicConfig``. Nothing here opens a socket; a test proves it.
"""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import VectorsUnavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from tokenizers import Tokenizer

MODEL_CONFIG = "l2_supercat"
WEIGHTS_FILE = "l2_supercat_256.safetensors"
TOKENIZER_FILE = "l2_supercat_tokenizer_config.json"
TENSOR_KEY = "embedding.weight"
FULL_DIMS = 256


@dataclass(frozen=True)
class ModelFiles:
    cache_dir: Path
    weights: Path
    tokenizer: Path

    @property
    def name(self) -> str:
        return f"wordllama-{MODEL_CONFIG}"


def package_dir() -> Path:
    """The installed ``wordllama`` folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec("wordllama")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise VectorsUnavailable("the embedding model is missing: the 'wordllama' package is not installed",
                                 hint="pip install 'wordllama>=0.4,<0.5', or set vectors.enabled: false")
    return Path(next(iter(spec.submodule_search_locations)))


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def prepare_cache_dir(cache_dir: Path) -> ModelFiles:
    """Lay out ``cache_dir`` as wordllama's loader expects, with links to the shipped files."""
    pkg = package_dir()
    sources = {"weights": pkg / "weights" / WEIGHTS_FILE, "tokenizers": pkg / "tokenizers" / TOKENIZER_FILE}
    for sub, src in sources.items():
        if not src.is_file():
            raise VectorsUnavailable(f"the embedding model is incomplete: {src.name} is not in the wordllama package",
                                     hint="reinstall wordllama 0.4 (its wheel ships the weights and tokenizer)")
        try:
            (cache_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            _link(cache_dir / sub / src.name, src)
        except OSError as exc:
            raise VectorsUnavailable(f"cannot prepare the model folder {cache_dir}: {exc.strerror}") from None
    return ModelFiles(cache_dir, cache_dir / "weights" / WEIGHTS_FILE, cache_dir / "tokenizers" / TOKENIZER_FILE)


def load_weights(files: ModelFiles, dims: int) -> npt.NDArray[np.float16]:
    """The token embedding matrix (vocabulary x ``dims``), float16 as shipped, its leading ``dims`` columns.

    Read by memory map from the safetensors layout (8 bytes of header length, a JSON header,
    the raw tensor). At the full width the matrix *is* the file's pages: read-only, never
    copied, shared with the page cache, read in as rows are used, and the kernel may drop
    them again under memory pressure. Fewer dimensions are a contiguous copy of the leading
    columns (rows of the full width would drag the unused half into memory).
    """
    import numpy as np

    try:
        with open(files.weights, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header_len = int.from_bytes(fh.read(8), "little")
            if not 2 <= header_len <= min(size - 8, 1 << 20):
                raise ValueError("no safetensors header")
            tensor = json.loads(fh.read(header_len))[TENSOR_KEY]
            rows, cols = (int(n) for n in tensor["shape"])
            begin, end = (int(n) for n in tensor["data_offsets"])
            if tensor["dtype"] != "F16" or end - begin != rows * cols * 2 or 8 + header_len + end > size:
                raise ValueError(f"{TENSOR_KEY} is not a float16 matrix inside the file")
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VectorsUnavailable(f"the embedding weights {files.weights.name} cannot be read: {exc}") from None
    matrix = np.frombuffer(mapped, np.float16, rows * cols, 8 + header_len + begin).reshape(rows, cols)
    if cols < dims:
        raise VectorsUnavailable(f"the embedding weights have shape {matrix.shape}, need at least {dims} columns")
    if cols == dims:
        return matrix
    return np.ascontiguousarray(matrix[:, :dims])  # the mapping goes with the last reference to it


def quantize_rows(matrix: npt.NDArray[np.float16],
                  block: int = 4096) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """int8 rows and one float32 scale per row (row = int8 x scale), half the memory of float16.

    Each row is scaled so its largest component is ±127. A text's vector is a sum of rows, so the
    rounding averages out: on the standard library's sources every passage's vector keeps a
    cosine above 0.99995 with the float16 one. Converted in blocks of rows (no full-size float32 copy).
    """
    import numpy as np

    rows = np.empty(matrix.shape, np.int8)
    scales = np.empty(len(matrix), np.float32)
    for start in range(0, len(matrix), block):
        part = matrix[start : start + block].astype(np.float32)
        peak = np.abs(part).max(axis=1)
        np.maximum(peak, 1e-12, out=peak)
        scales[start : start + block] = peak / 127.0
        np.rint(part * (127.0 / peak)[:, None], out=part)
        rows[start : start + block] = part
    return rows, scales


def load_tokenizer(files: ModelFiles) -> Tokenizer:
    # One thread: the embedding step runs beside the indexer on few cores, and each rayon worker
    # would keep its own malloc arena (memory that is not given back).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(files.tokenizer))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise VectorsUnavailable(f"the tokenizer {files.tokenizer.name} cannot be read: {exc}") from None
    tok.no_padding()
    tok.no_truncation()
    return tok


def load_via_wordllama(cache_dir: Path) -> object:
    """``WordLlama.load`` through the prepared folder, downloads disabled (for tests and comparison)."""
    prepare_cache_dir(cache_dir)
    from wordllama import WordLlama

    return WordLlama.load(config=MODEL_CONFIG, cache_dir=cache_dir, dim=FULL_DIMS, disable_download=True)
