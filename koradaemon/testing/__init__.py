"""Test doubles shipped with the package (run for real, no mocks): see :mod:`koradaemon.testing.fake_agent`."""
