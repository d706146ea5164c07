"""Audio codecs: 24 kHz mono audio <-> codec tokens at 12.5 Hz (see base.py)."""
