"""Parity between the control (legacy) and a candidate (a new service).

``corpus`` loads the shared request corpus (``parity/cases/*.yaml``); ``diff``
compares two observations of the same request and names every difference.
The runner, reports and noise cancellation build on these.
"""
