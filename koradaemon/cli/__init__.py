"""Command line: parser, remote (through the control socket), offline (on the data root), rendering."""

from .main import main

__all__ = ["main"]
