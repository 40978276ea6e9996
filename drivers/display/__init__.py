"""``display.pole``: a customer-facing pole display, a 2x20 VFD on a serial line.

It shows each product its station's scanner scans, with the price, on the
upper line and the running total on the lower one; "Thank you" once the
station's sale is on disk, cleared a few seconds later.

Two command sets, chosen by ``protocol:`` in devices.yaml, as most 2x20 VFDs
speak one or the other (often selectable by DIP switch):

- ``cd5220`` (the default): the CD5220 set that most no-name pole displays
  ship with. ESC @ initialise, FF clear, ESC DC1 overwrite mode, ESC l x y
  move the cursor (column 1-20, line 1-2), ESC _ n cursor off/on.
- ``epson``: Epson's ESC/POS customer display set of the DM-D series. ESC @
  initialise, FF clear, US MD1 (US 0x01) overwrite mode, US $ x y move the
  cursor, US C n cursor off/on.

Characters: the display's code page is left at its power-on default (PC437,
whose printable ASCII half every VFD shares). Text sent to it is ASCII only:
letters with accents lose them (é -> e), full-width forms become their ASCII
selves (Ａ -> A), and any other character (Chinese names, say) is dropped;
a product name left empty shows its SKU (protocol.ascii_text). GB18030
displays exist but are not assumed.

``protocol.py`` builds the bytes (no I/O), ``driver.py`` listens on the bus
and writes them, ``emulator.py`` is a pty display that parses them back into
its two lines, for tests and ``make run``.
"""
