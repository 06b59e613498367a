"""Vector retrieval beside the full-text index (issue 15).

Importing this package loads nothing heavy: numpy, the model and the sqlite-vec
extension are imported only by :mod:`.model`, :mod:`.embedder`, :mod:`.store` and
:mod:`.service`, which the daemon imports only when ``vectors.enabled`` is true.
"""

from __future__ import annotations

from ..errors import KoraError

MODES = ("keyword", "vector", "hybrid")


class VectorsUnavailable(KoraError):
    """Vector search was asked for but the model or the extension is off, missing or broken."""

    exit_code = 69
    code = "vectors_unavailable"
