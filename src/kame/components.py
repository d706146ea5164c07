"""The table of built-in components: kind, spec scheme -> factory (imported lazily).

Each factory is called as ``factory(arg, **kwargs)`` where ``arg`` is the part of the spec
after the scheme (or None). Add a line here to add a component.
"""

from .registry import register

# kind "codec": audio <-> tokens (kame.codec.base.Codec)
# kind "frontend": a front-end LM checkpoint (kame.model)
# kind "stt": streaming speech recognition (kame.backend.stt.base.STT)
# kind "llm": streaming chat (kame.backend.llm.base.LLM)
# kind "tts": speech synthesis (kame.backend.tts.base.TTS)
#
# Entries are added by each component's owner, e.g.:
# register("llm", "openai", "kame.backend.llm.openai:create", extra=None,
#          help="OpenAI-compatible chat completions: openai:MODEL (env OPENAI_BASE_URL, OPENAI_API_KEY)")

# --- tts (lead) ---
register("tts", "piper", "kame.backend.tts.piper:create", extra="tts",
         help="piper voice; default the bundled en_US joe voice, or piper:/path/voice.onnx")
register("tts", "espeak", "kame.backend.tts.espeak:create", extra="tts",
         help="espeak-ng (robotic, fast): espeak or espeak:VOICE (e.g. en-us+f2)")
register("tts", "embedded", "kame.backend.tts.piper:create", extra="tts", help="= piper")
