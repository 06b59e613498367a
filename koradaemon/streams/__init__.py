"""Live event streams to the outside: the event schema and the secrets vault."""
