"""Barcode scanners: what they send (protocol, framing), keyboard-mode decoding, and the HID reader."""
