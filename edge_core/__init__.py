"""The shared core at the bottom of the layers: what drivers (and the wire in sync/) need from us.

It owns the device errors at the root of the one error tree (``errors``), the
small config value types and validation helpers a driver's ``Config`` uses
(``config_types``), the bus interface a driver publishes on and a consumer
reads from (``bus``: a Protocol, not the agent's bus), ``logonce``, and the
one retry delay (``backoff``).

Anything of ours may import it: drivers/, sync/, edge_agent/, ar_mirror/.
It imports nothing of ours, only the standard library and pydantic; the
import contracts in pyproject.toml (``lint-imports``, run by ``make lint``)
keep it so. Keep it small: a name belongs here only when a driver or sync
needs it and it carries no agent business (no store, no catalog, no HTTP).
"""
