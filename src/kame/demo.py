"""`kame demo` — the main job, end to end, on the embedded default (CPU, offline).

    kame demo                          # question -> cascade answer + tandem run, out/demo/
    kame demo --question "How far away is the Moon?" --mode cascade
    kame demo --set backend.llm=openai:gpt-4.1      # any config override applies to both runs

Steps:
  1. synthesize the spoken question with the embedded TTS (piper) -> OUT/question.wav
  2. cascade (embedded STT -> embedded LLM -> piper) in simulated real time -> OUT/cascade.*
  3. tandem: front-end + codec with the same STT/LLM as the back-end feeding the oracle
     stream, in simulated real time -> OUT/tandem.*

Until kame's own trained tiny front-end exists (roadmap), the tandem's front-end is a
random-weight tiny checkpoint: its audio is babble (labelled as such everywhere), but the
back-end's partial transcripts, the re-predictions streamed into the oracle, the batched
per-frame stepping and the latency metrics are all real.
"""

from __future__ import annotations

import argparse
import textwrap
import time

from .audio import write_wav
from .cliargs import tail_seconds
from .config import add_config_arguments, check_text, config_from_args
from .errors import ConfigError
from .paths import check_output_folder, check_replaceable

DEFAULT_QUESTION = "What is the capital city of France?"
DEFAULT_TAIL_S = 12.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    shown = textwrap.shorten(DEFAULT_QUESTION, 60, placeholder=" ...").replace("%", "%%")  # (argparse's %)
    p.add_argument("--question", default=DEFAULT_QUESTION, help=f"the question the user speaks (default {shown!r})")
    p.add_argument("-o", "--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--mode", choices=("both", "cascade", "tandem"), default="both",
                   help="the runs: both (the default: the cascade, then the tandem), or one of them; it decides "
                        "over the config's mode")
    p.add_argument("--fast", action="store_true",
                   help="no wall-clock pacing (latencies not meaningful; the cascade's answer comes too late to be in the file)")
    # the cascade's first sound comes 3-5 s after the question, and its answer takes seconds more
    p.add_argument("--tail", type=tail_seconds, default=DEFAULT_TAIL_S,
                   help=f"seconds of silence after the question (default {DEFAULT_TAIL_S:g}: room for the cascade's whole answer)")
    add_config_arguments(p)


def _heading(cfg) -> str:
    """What a mode's run is made of, as configured (was: always "embedded STT -> embedded LLM ->
    piper TTS", whatever --set said)."""
    b = cfg.backend
    if cfg.mode == "cascade":
        return f"cascade: STT {b.stt} -> LLM {b.llm} -> TTS {cfg.cascade.tts} (a spoken answer)"
    random = " (random weights: kame ships no trained front-end yet)" if cfg.frontend.spec.startswith("random") else ""
    codec = "its own codec" if cfg.codec.spec == "auto" else f"codec {cfg.codec.spec}"
    llm = "LLM not loaded (STT none)" if b.stt == "none" and b.llm != "none" else f"LLM {b.llm}"  # (runtime.backend)
    return f"tandem: front-end {cfg.frontend.spec}{random} + {codec}; back-end STT {b.stt} -> {llm} -> oracle stream"


def main(args) -> int:
    from .backend.tts.piper import PiperTTS
    from .runtime import filemode

    check_text(args.question, "--question")  # (before the TTS: piper failed on it with a traceback)
    if not any(ch.isalnum() for ch in args.question):
        raise ConfigError(f"--question has nothing to say: {args.question!r}")
    out = check_output_folder(args.out)
    modes = ("cascade", "tandem") if args.mode == "both" else (args.mode,)
    for name in ["question.wav"] + [f"{mode}{ext}" for mode in modes for ext in (".wav", ".json", ".png")]:
        check_replaceable(out / name, f"--out {args.out}", "--out")  # (kame run checks its own only before it)
    # the config and --tail are checked now, not after the question is synthesized (kame run
    # checks them again per mode)
    cfg = config_from_args(args)
    filemode.check_tail(args.tail)
    if args.mode in ("both", "cascade"):
        from .cascade.agent import check_cascade_backend

        check_cascade_backend(cfg)
    t0 = time.perf_counter()
    question = out / "question.wav"
    pcm = PiperTTS(seed=0).synth(args.question)  # (seeded: the same question.wav every run)
    write_wav(question, pcm)
    print(f"== kame demo: the user asks {args.question!r} ({pcm.shape[0] / 24000:.1f} s of speech, "
          f"piper TTS) -> {question}\n")
    for mode in modes:
        print(f"== {_heading(config_from_args(argparse.Namespace(**{**vars(args), 'mode': mode})))}")
        run_args = argparse.Namespace(
            input=str(question), output=str(out / f"{mode}.wav"), mode=mode, fast=args.fast,
            tail=args.tail, no_png=False, config=args.config, overrides=list(args.overrides),
        )
        rc = filemode.main(run_args)
        if rc:
            return rc
        print()
    print(f"== done in {time.perf_counter() - t0:.0f} s; listen to {out}/*.wav (user left, agent right), "
          f"see {out}/*.png for the timelines and {out}/*.json for transcripts, oracle events and metrics.")
    return 0
