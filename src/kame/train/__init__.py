"""Training the front-end: the data layout, data synthesis (`kame data synth`) and fine-tuning (`kame train`).

docs/data.md describes the data, docs/training.md the fine-tuning. What exists now (tested, tests/train):

- ``kame.train.data``: the on-disk layout of one training dialogue (a folder: stereo 24 kHz
  audio.wav, user left / agent right as `kame run` writes it; dialogue.json with both speakers'
  words and times, the oracle events at their frames with their hint levels, the tokenizer's
  sha256) and its checks (``DataError``);
- ``kame.train.manifest``: the JSONL manifest of a set (one line per dialogue, with its
  dialogue.json's sha256, which kame train's resume checks);
- ``kame.train.codes``: the optional cache of a dialogue's codec codes (codes.npz, checked
  against the codec's fingerprint and the audio's sha256);
- ``kame.train.examples``: a dialogue -> ``(codes [K, T], oracle [T])`` laid out as
  ``LMModel.forward`` takes them (the agent's text stream with Moshi's pad / end-of-padding rules,
  the user's frame f + 1 beside the agent's frame f, the oracle ``oracle_timeline`` gives, the
  stepper's own rules), ``collate`` for batches, and ``windows`` / ``crop`` to train long
  dialogues on fixed-length windows (the training forward's memory is quadratic in length);
- ``kame.train.recorded.from_kame_run``: a conversation `kame run` recorded -> a dialogue;
- ``kame.train.qa``: text QA sets (GSM8K, MMLU-Pro, HSSBench, plain question/answer) -> items and
  the turns a user and an agent would say;
- ``kame.train.oracle_sim``: KAME's simulated oracle (LLM predictions of the agent's reply from the
  user's words heard so far, with the true reply as a hint graded by the share heard), or its
  randomized guidance without an LLM (other items' true replies, then the true one);
- ``kame.train.synth``: `kame data synth`, QA items -> spoken dialogue folders + a manifest;
- ``kame.train.reoracle``: `kame data oracle`, a new simulated oracle for a set's dialogues (any
  dialogue in the layout, multi-turn too), their audio and codes cache kept;
- ``kame.train.datacmd``: what `kame data synth` and `kame data oracle` share (the simulator, the
  tokenizer of --tokenizer, the settings record synth.json, their report lines);
- ``kame.train.encode``: `kame data encode`, a set's codes cache in several worker processes;
- ``kame.train.loading``: the front-end `kame train` trains, with its codec and tokenizer;
- ``kame.train.finetune`` / ``kame.train.loss``: `kame train`, fine-tuning a front-end on a manifest
  (KAME's optimizer, loss weights and oracle augmentation; one process or torchrun/DDP;
  checkpoints in the published format with their config, so ``load_frontend``, ``kame run`` and
  ``kame serve`` take them as they take KAME's);
- ``kame.train.launch``: `kame train`'s work up to the loop (finetune.main's ``run``: under
  torchrun the process group, joined first and left at the end; the command's checks, made by
  all the processes together);
- ``kame.train.parallel``: what a 7B fine-tune needs (KAME's was DeepSpeed ZeRO-3 bf16): bf16
  compute over fp32 weights, FSDP2 sharding over torchrun's processes, recomputed activations;
  checkpoints in one layout whatever these are.

Not built yet: a streaming data loader for large sets, and a front-end trained by kame (its tandem runs a random-weight
front-end, ``random:tiny``, and says so).
"""
