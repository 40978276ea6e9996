"""A heartbeat sensor: the simplest device, proving the supervision path."""
