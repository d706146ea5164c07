"""The asynchronous back-end: streaming STT, LLM, TTS, and the oracle producer.

Shared data types live in ``types.py``; each service kind has one small interface in its
``base.py``.

``release_children()`` stops the child processes the agents of a process share (the embedded
LLM's, pocketsphinx's) once you are done with them.
"""

from .childproc import release_children

__all__ = ["release_children"]
