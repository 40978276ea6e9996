"""Remote actions: which may be sent to which device, and their arguments checked. No I/O.

One allow-list for everyone who sends or runs a command: the hub's console
before it publishes on ``hub/{store}/cmd`` (sync/hub/console/commands.py),
the agent's downlink before it runs one (sync/downlink.py ``Downlink.check``)
and the agent's own ``/console``, which runs its actions through that same
downlink.

The actions of a device are those its driver declares (``actions`` of each
device in a store's snapshot: drivers/base.py); a snapshot without them (an
agent from before they were sent) gets ``reopen``, which every device has.
The agent itself (device ``agent``) has ``status``, ``set_log_level`` and
``resend_from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

AGENT = "agent"
REOPEN = "reopen"
# What every device has, and all a snapshot without ``actions`` gets.
DEVICE_ACTIONS = (REOPEN,)
AGENT_ACTIONS = ("status", "set_log_level", "resend_from")
LOG_LEVELS = ("debug", "info", "warning", "error")
# A stream id is a UUID (edge_agent/store/db.py); the length leaves room and keeps echoes short.
MAX_STREAM_ID = 64


class ActionRefused(ValueError):
    """An action that will not be sent or run; the message says what is allowed."""


def actions_for(device: str, offered: Sequence[str] | None) -> list[str]:
    """The actions offered for a device whose snapshot says ``offered`` (None: it says nothing), or for
    the agent itself."""
    if device == AGENT:
        return list(AGENT_ACTIONS)
    return list(dict.fromkeys(offered)) if offered is not None else list(DEVICE_ACTIONS)


def check_args(action: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` if they are right for ``action``; ActionRefused saying what is wrong otherwise."""
    if action == "set_log_level" and args.get("level") not in LOG_LEVELS:
        raise ActionRefused(f"set_log_level needs args.level, one of {', '.join(LOG_LEVELS)}")
    if action == "resend_from":
        seq = args.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ActionRefused("resend_from needs args.seq, a whole number from 1")
        stream = args.get("stream")
        if stream is not None and not (isinstance(stream, str) and 0 < len(stream) <= MAX_STREAM_ID):
            raise ActionRefused("resend_from's args.stream, when given, is a stream id "
                                "(the stream of the events to send again)")
    return args


def check(device: str, kind: str | None, action: str, args: dict[str, Any],
          offered: Sequence[str] | None = None) -> dict[str, Any]:
    """The arguments to send, checked; ActionRefused when the action is not offered (``offered``: the
    device's ``actions`` in its store's snapshot) or an argument is wrong."""
    allowed = actions_for(device, offered)
    if action not in allowed:
        whom = "the agent" if device == AGENT else f"{device} ({kind or 'kind unknown'})"
        raise ActionRefused(f"action {action!r} is not allowed for {whom}; allowed: {', '.join(allowed)}")
    return check_args(action, args)
