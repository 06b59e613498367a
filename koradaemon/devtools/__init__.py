"""Developer checks shipped with the package (run with ``python -m``)."""
