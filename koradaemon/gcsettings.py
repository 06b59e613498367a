"""The collector's settings for a long-running daemon, applied once everything is built."""

from __future__ import annotations

import gc

# The index pipeline allocates per file at a high rate: young collections every 700 allocations
# promote its short-lived objects and make the full collections that stall a search (tens of ms)
# frequent. Larger generations hold a few MB more of cyclic garbage, never a pause per search.
THRESHOLDS = (50_000, 20, 100)


def settle() -> None:
    """Collect once, move everything that exists (it lives as long as the daemon) out of the
    collector's way, and use :data:`THRESHOLDS` from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
