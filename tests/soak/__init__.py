"""The store-day soak: a compressed day of a whole store, with every promise checked all along.

``python -m soak --minutes N`` (from ``tests/``, or ``make soak MINUTES=N``)
starts the real agent, Mosquitto, the reference hub with its console and
every demo device emulated at the wire (rig), runs scripted actors
(actors) and injected faults (faults) against them, checks the invariants
all along (invariants) and prints a table of checks and violations
(report). tests/soak/test_soak.py runs a 90-second day inside ``make test``.
"""
