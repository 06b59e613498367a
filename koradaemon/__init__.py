"""koradaemon: the data engine of KORA OS."""

__version__ = "0.1.0"
