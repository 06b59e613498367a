"""The control socket: JSON-lines requests over a 0600 Unix socket (protocol, server, client)."""
