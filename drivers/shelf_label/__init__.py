"""Electronic shelf labels: rendering and the back ends that show the result.

    models.yaml, models.py   label models as data: panel size, colours, rotation,
                             the OpenEPaperLink hwType, the layout template
    fonts.py                 the one place that finds the font (fonts-wqy-microhei)
    render.py                LabelContent -> PIL image in the model's palette (pure)
    draw.py                  drawing primitives render.py lays out (text, price, stars, QR)
    oepl.py                  async client of an OpenEPaperLink access point's HTTP API
    ap_emulator.py           an emulated access point for tests and ``make run``
    files.py                 the file back end: one PNG per label, written atomically
    config.py                devices.yaml keys of both back ends, bindings included
    driver.py                the back ends as devices: shelf_label.oepl and shelf_label.files

What each label shows, and whether it shows the checkout's price, is the
agent's business: edge_agent/labels/.
"""
