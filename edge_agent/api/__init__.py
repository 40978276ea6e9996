"""The local HTTP API served to kiosks, wristbands, PADs, the mirror and consoles."""
