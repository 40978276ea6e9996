"""The AR try-on mirror: camera, face and body tracking, makeup, glasses and garments, and the mirror's stream.

Everything that touches a camera frame runs in the mirror process
(``python -m ar_mirror.process``), which the agent starts and watches as the
``mirror.camera`` device (drivers/mirror/). The agent itself imports only
the modules without numpy or OpenCV: ``control`` (the messages between the
two processes), ``products`` (try-on products as data) and ``stream`` (for
the stream's content type).
"""
