"""Shelf labels: the agent keeps every label showing the price the checkout charges.

    service.py      LabelService: the one owner of each label's state; bus events, planning, push
                    queues, what the drivers report
    bindings.py     which product (and zone) each label shows: devices.yaml's bulk bindings, and the
                    rules and errors of the API's (the flows: edge_agent/usecases/labels.py)
    plan.py         what a label should show (content and its hash, or a notice) (pure)
    pusher.py       one device's push queue: render, push with bounded concurrency, retry
    watch.py        what a poll tells: confirmations, drift, tag health (pure)
    compliance.py   does a label show the checkout's price right now (pure)
    health.py       the monitor: compliance over time, alerts, counters, the health summary
    alerts.py       alerts raised once per condition and cleared once
    table.py        the labels table, in memory and written back in batches
    views.py        what the API shows

The back ends (an OpenEPaperLink access point, a folder of PNGs) are devices:
drivers/shelf_label/driver.py.
"""

from edge_agent.labels.service import LabelService

__all__ = ["LabelService"]
