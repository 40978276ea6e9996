"""ESC/POS receipt printers: profiles as data, status, text encoding, documents, an emulator.

    profiles.py / profiles.yaml   printer models as data (paper, code pages, cutter, QR, barcode)
    status.py                     DLE EOT real-time status: the queries and their one-byte replies
    encoding.py                   text to printer bytes: GB18030 (FS &) or code pages (ESC t)
    layout.py                     a page builder on python-escpos's Dummy: lines, columns, QR, barcode, cut
    models.py                     the data each document is fed (pydantic)
    documents.py                  sale receipt, return slip, pick ticket, test page: data in, bytes out
    elements.py                   what ends up on paper: text lines, barcodes, QR codes, images, cuts
    parser.py                     ESC/POS bytes back into elements
    emulator.py                   a printer on TCP (and a pty) for tests and ``make run``
    spool.py                      what the driver needs from the durable print queue: Job, Spool
    config.py                     devices.yaml keys of ``printer.escpos`` and the transport they make
    driver.py                     the ``printer.escpos`` driver: status around every job, waits out paper-out

All but emulator.py and driver.py are pure: they build and parse bytes and do
no I/O. The queue itself lives in the agent's store (edge_agent/printing.py).
"""
