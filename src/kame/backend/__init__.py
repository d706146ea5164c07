"""The asynchronous back-end: streaming STT, LLM, TTS, and the oracle producer.

Shared data types live in ``types.py``; each service kind has one small interface in its
``base.py``.
"""
