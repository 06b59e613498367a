"""The daemon: assembler, control operations, status, reload, signals, run lock."""
