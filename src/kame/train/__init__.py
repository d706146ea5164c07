"""Training the front-end (roadmap, not built yet: nothing here runs).

What will live here, and the pieces of today's code it builds on:

- synthetic spoken dialogues from text QA sets (MMLU-Pro, GSM8K, HSSBench): the user side
  spoken by kame's TTS (kame.backend.tts; the voices kame.codec.embedded.data uses), the agent
  side by the same TTS, both coded to 12.5 Hz tokens by a codec (kame.codec: Mimi or embedded);
- the simulated oracle: LLM predictions of the agent's reply from partial transcripts at graded
  hint levels, one token per 80 ms frame as the stepper feeds it (kame.model.stepper.
  oracle_timeline turns resets/appends at frames into that timeline; the prompt is
  kame.backend.prompt's, the tokens kame.backend.tokenizer's);
- fine-tuning under torchrun with LMModel's training forward, ``model(codes, oracle=oracle,
  inputs=dropped)`` (kame.model.lm: logits aligned with the codes, the oracle summed into the
  temporal input; its docstring gives the data layout: user frame f + 1 beside model frame f);
- checkpoints in the published format with their config (kame.model.loaders.save_frontend), so
  ``load_frontend``, ``kame run`` and ``kame serve`` take them as they take KAME's.

Until then kame's tandem runs a random-weight front-end (``random:tiny``) and says so.
"""
