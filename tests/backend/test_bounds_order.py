"""Constants of the embedded back-ends whose order the docs rely on."""

from __future__ import annotations


def test_the_embedded_stt_and_llm_bounds_keep_their_order():
    """Constants whose order the docs rely on (final reads l1, r9): a hung pocketsphinx child's own
    timeout fires before the embedded STT's stall (so the utterance finishes on whisper), and the
    stall timers' wait for a reload covers the embedded LLM's own bounds of a prompt read + a load."""
    from kame.backend.llm.embedded import CANCEL_GRACE_S, LOAD_TIMEOUT_S
    from kame.backend.stt.embedded import EmbeddedSTT
    from kame.backend.stt.pocketsphinx import REPLY_TIMEOUT_S
    from kame.runtime.clock import RELOAD_WAIT_S

    assert EmbeddedSTT.decode_stall_s > REPLY_TIMEOUT_S
    assert RELOAD_WAIT_S > 2 * LOAD_TIMEOUT_S + CANCEL_GRACE_S
