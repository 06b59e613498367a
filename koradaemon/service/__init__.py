"""Service-manager integration: sd_notify, watchdog pings and agency token files."""
