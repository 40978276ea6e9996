"""What a host name in a URL the agent is given means for it: whether it is this PC (loopback).

Owns the one test that lets plain http:// through to a hub or a release server only when it is on this PC;
enroll (``--hub``) and release (the update url) both ask it.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and a loopback address (127.0.0.0/8, ::1); False for any other name or text."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
