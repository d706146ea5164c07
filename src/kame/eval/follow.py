"""``kame eval follow``: how well a front-end says what its oracle gives it, on held-out dialogues.

    kame eval follow data/test/train.jsonl --frontend runs/x/latest [--limit 20] [-o follow/] [--per-dialogue]
        [--device cuda]

The front-end's own skill in the tandem, apart from the back-end: each dialogue of a manifest
(`kame data synth`'s layout, not trained on) is run through the front-end as the runtime runs it
(kame.model.stepper.Stepper, one frame at a time: the user's codes of each frame, the recorded
oracle events applied before the step of their frame, the agent's text and audio sampled), and
compared with what the dialogue's agent said:

- teacher forced (``LMModel.forward`` on the dialogue): the share of the agent's word tokens
  (its text stream but padding) and of its semantic audio codes (codebook 0) the model ranks
  first - what training moves first; and the word tokens' share again with no oracle at all (pad
  at every step): how much the front-end reads its oracle (a front-end that ignores it scores the
  same both ways); and, at the frames the agent's words span, the audio codes it ranks first:
  codebook 0, and the other codebooks together (silence is most frames and its codes are easy; the
  embedded codec's later codebooks carry much of what makes its speech intelligible);
- generated: the agent's text stream as words against the agent's words (text WER), the first
  generated word's time against the agent's first word's (onset error, s), and the generated
  audio (decoded by the codec) transcribed by whisper tiny.en against the agent's words (audio
  WER, and CER: the letters, spaces left out; `--no-asr` skips both, they need the ``stt``
  extra's faster-whisper); beside them, the same measure of the recording itself through the
  codec (its agent's codes decoded): the best audio WER / CER this codec and whisper allow on
  these words. Below the table, the CER of each generated audio against the next dialogue's reply
  (chance: what audio that does not follow its own reply scores).

Prints a table (the totals, and a row per dialogue with --per-dialogue); with -o, OUT/DIALOGUE.wav (stereo: the
user, the generated agent), OUT/results.jsonl and OUT/follow.json (the settings: ``settings``), the two written
together at the end; a rerun into OUT removes the last run's two before its first wav (stopped midway, it
leaves no results beside other audio). Dialogue i is sampled with the seed --seed + i.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..cliargs import at_least
from ..errors import CheckpointError, ConfigError, NotAvailableError
from ..model.config import MAX_SEED
from ..paths import check_output_folder, file_sha256, write_replacing
from ..train.data import FRAME_RATE, SAMPLE_RATE, DataError
from .firstwrites import FirstWrites
from .results import FOLLOW_SETTINGS, check_not_other, write_settings

NO_ASR = "; or --no-asr (no audio WER / CER)"  # (the way out a missing whisper's error names)


def _note(line: str) -> None:
    """A note on stderr (stdout holds the table)."""
    print(line, file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="held-out dialogues: a manifest (kame data synth's OUT/train.jsonl) or its folder")
    p.add_argument("--frontend", required=True, help="the front-end: a checkpoint folder (kame train's OUT/latest), "
                                                     "hf://..., or random:PRESET (a baseline)")
    p.add_argument("--codec", default="auto", help="its codec (default auto: the checkpoint's own)")
    p.add_argument("--limit", type=at_least(1), default=None, help="the first N dialogues")
    p.add_argument("--temp", type=at_least(0, float), default=None,
                   help="sampling temperature of audio and text (default Moshi's 0.8 / 0.7; 0: greedy)")
    p.add_argument("--seed", type=at_least(0, maximum=MAX_SEED), default=0,
                   help="sampling seed (torch's: 0 to 2**64 - 1; default 0): dialogue i is sampled with seed + i")
    p.add_argument("--no-asr", action="store_true", help="no whisper transcript of the generated audio")
    p.add_argument("-o", "--out", default=None, help="folder for the generated audio, results.jsonl and follow.json "
                                                     "(the settings)")
    p.add_argument("--per-dialogue", action="store_true", help="a row per dialogue")
    p.add_argument("--device", default="auto", help="where the front-end runs: auto (cuda when there is one; "
                                                   "default), cpu, cuda, cuda:N (the codec and whisper: the CPU)")


class TeacherForced(NamedTuple):
    """Counts of one teacher-forced forward (``teacher_forced``)."""
    words_ok: int  # the agent's word tokens (its text stream but padding) ranked first
    words: int
    semantic_ok: int  # its semantic codes (codebook 0) ranked first, at every frame
    semantic: int
    speaking_ok: list[int]  # per audio codebook: codes ranked first at the frames its words span
    speaking: list[int]  # per audio codebook: codes with a target at those frames
    speaking_nll: list[float]  # per audio codebook: the summed cross-entropy (nats) of those codes


def teacher_forced(model, codes, oracle, speaking=None) -> TeacherForced:
    """The counts of the training forward on one dialogue's ``codes`` [K, T], ``oracle`` [T] (None:
    no oracle, pad at every step). ``speaking`` [T] bool: the frames where the agent speaks (None:
    none), where the audio codes are counted per codebook: silence is most frames of a dialogue and
    its codes are easy, so the semantic count alone can look fine while the speech is not learned."""
    import torch

    cfg = model.cfg
    codes = codes.to(model.device)
    with torch.no_grad():
        out = model(codes[None], oracle=oracle[None].to(model.device) if model.has_oracle and oracle is not None
                    else None)
    tgt, mask = codes[0], out.text_mask[0, 0]
    words = mask & (tgt != cfg.existing_text_padding_id) & (tgt != cfg.existing_text_end_padding_id)
    hit = out.text_logits[0, 0].argmax(-1) == tgt
    if not cfg.dep_q:
        return TeacherForced(int((hit & words).sum()), int(words.sum()), 0, 0, [], [], [])
    acodes = codes[1: 1 + cfg.dep_q]  # [dep_q, T]
    ahit = (out.logits[0].argmax(-1) == acodes) & out.mask[0]  # [dep_q, T]
    talk = out.mask[0] & (torch.zeros_like(mask) if speaking is None else speaking.to(mask.device))  # [dep_q, T]
    nll = torch.nn.functional.cross_entropy(out.logits[0].float().transpose(1, 2), acodes.clamp(min=0),
                                            reduction="none")  # [dep_q, T] (-1 codes: masked out below)
    return TeacherForced(int((hit & words).sum()), int(words.sum()), int(ahit[0].sum()), int(out.mask[0, 0].sum()),
                         (ahit & talk).sum(-1).tolist(), talk.sum(-1).tolist(),
                         torch.where(talk, nll, 0.0).sum(-1).tolist())


def speaking_frames(d):
    """[frames] bool: the 80 ms frames that hold some of the agent's words in dialogue ``d``: from
    the frame of each word's start (kame.train.data.frame_of) up to the frame its end falls in, a
    word ending on a frame's boundary not marking that frame."""
    import torch

    from ..train.data import FRAME_RATE, frame_of

    talk = torch.zeros(d.frames, dtype=torch.bool)
    for w in d.words_of("agent"):
        s = frame_of(w.start)
        talk[s: max(s + 1, math.ceil(w.end * FRAME_RATE - 1e-6))] = True
    return talk


def generate(model, d, codes, sampling, seed: int) -> tuple[list[int], "np.ndarray"]:
    """Run the dialogue through a Stepper as the runtime does: the text token of each frame [T]
    and the audio codes [dep_q, T] (frames the delays leave ungenerated at the end are dropped).
    ``codes`` [K, T]: the dialogue's training example, whose user rows hold user frame t at
    column t - 1 (LMModel.forward's layout); the user's frame 0, which the stepper never reads
    (step 0 feeds BOS), is not in it, and step 0 is given zeros."""
    import torch

    from ..model.stepper import Stepper
    from ..seeding import seed_generator

    st = Stepper(model, 1, sampling, generator=seed_generator(torch.Generator(device=model.device), seed))
    events: dict[int, list] = {}
    for ev in d.oracle if model.has_oracle else ():  # (a model without the stream reads none, as teacher_forced)
        events.setdefault(ev.frame, []).append(ev)
    rows = codes[1 + model.cfg.dep_q:]  # [n_user_q, T]: user frame t at column t - 1
    users = torch.cat([torch.zeros_like(rows[:, :1]), rows[:, :-1]], dim=1).to(model.device)  # [n_user_q, T]: t at t
    text, audio = [], []
    with torch.no_grad():
        for t in range(d.frames):
            for ev in events.get(t, []):  # (before the step of their frame, as the back-end's arrive)
                st.oracle.reset(0) if ev.event == "reset" else st.oracle.append(0, ev.ids)
            out = st.step(users[:, t][None] if model.cfg.n_user_q else None)
            if bool(out.valid[0]):
                text.append(int(out.text[0]))
                audio.append(out.audio[0].tolist())  # (on the host: the codec decodes on the CPU)
    return text, np.asarray(audio, dtype=np.int64).T.reshape(model.cfg.dep_q, -1)


def words_of_stream(text: list[int], tokenizer, cfg) -> tuple[str, int | None]:
    """The text stream as a string, and the frame of its first word token (None: no word)."""
    from ..train.examples import stream_ids

    is_word = stream_ids(cfg).is_word
    words = [(f, i) for f, i in enumerate(text) if is_word(i)]
    return tokenizer.decode([i for _, i in words]), words[0][0] if words else None


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(word errors, reference words) after kame.bench.textmetrics.normalize."""
    from ..bench.textmetrics import edit_distance, normalize

    r = normalize(ref)
    return edit_distance(r, normalize(hyp)), len(r)


def cer(ref: str, hyp: str) -> tuple[int, int]:
    """(letter errors, reference letters): the normalized words' letters, spaces left out, so a
    word heard split or joined ("there for" / "therefore") or a near miss costs a letter or two,
    not whole words: audio that begins to say its words shows here before its WER falls."""
    from ..bench.textmetrics import edit_distance, normalize

    r = "".join(normalize(ref))
    return edit_distance(list(r), list("".join(normalize(hyp)))), len(r)


def follow_one(model, codec, tokenizer, d, sampling, seed: int, asr, *,
               use_cache: bool = True) -> tuple[dict, "np.ndarray"]:
    """One dialogue's measures (see the module docstring) and the generated audio; its codes read
    from its codes.npz when ``use_cache`` and it has one, else encoded from its audio."""
    import torch

    from ..train.examples import training_example

    cfg = model.cfg
    codes, oracle = training_example(d, codec, tokenizer, cfg, use_cache=use_cache)
    tf = teacher_forced(model, codes, oracle, speaking_frames(d))
    bare = teacher_forced(model, codes, None).words_ok if model.has_oracle else None
    text, audio = generate(model, d, codes, sampling, seed)  # (the codes read or encoded once)
    said, first = words_of_stream(text, tokenizer, cfg)
    agent = d.words_of("agent")
    ref = " ".join(w.word for w in agent)
    rec = {"dialogue": str(d.folder), "reference": ref, "text": said, "text_words_ok": tf.words_ok,
           "text_words": tf.words, "text_words_ok_no_oracle": bare, "semantic_ok": tf.semantic_ok,
           "semantic": tf.semantic, "speaking_codes_ok": tf.speaking_ok, "speaking_codes": tf.speaking,
           "speaking_codes_nll": [round(x, 3) for x in tf.speaking_nll]}
    rec["text_errors"], rec["ref_words"] = wer(ref, said)
    rec["onset_error_s"] = None if first is None or not agent else round(first / FRAME_RATE - agent[0].start, 3)
    with torch.no_grad():
        pcm = codec.decode(torch.from_numpy(audio)[None]).numpy()[0] if audio.shape[1] else np.zeros(0, np.float32)
    rec["asr"] = rec["asr_recorded"] = None
    if asr is not None:
        heard = asr(pcm, SAMPLE_RATE) if pcm.size else ""
        rec["asr"], rec["audio_errors"] = heard, wer(ref, heard)[0]
        rec["audio_char_errors"], rec["ref_chars"] = cer(ref, heard)
        with torch.no_grad():  # the recording's own agent codes [dep_q, T], decoded: the codec's ceiling
            own = codec.decode(codes[1: cfg.dep_q + 1][None]).numpy()[0]
        heard = asr(own, SAMPLE_RATE)
        rec["asr_recorded"], rec["audio_errors_recorded"] = heard, wer(ref, heard)[0]
        rec["audio_char_errors_recorded"] = cer(ref, heard)[0]
    return rec, pcm


def chance_cer(recs: list[dict]) -> tuple[int, int]:
    """(letter errors, reference letters) of each record's audio transcript (``asr``) against the
    next record's reference (the last against the first's): what audio that does not follow its own
    reply scores; (0, 0) for fewer than two records."""
    if len(recs) < 2:
        return 0, 0
    pairs = [cer(recs[(i + 1) % len(recs)]["reference"], r["asr"]) for i, r in enumerate(recs)]
    return sum(e for e, _ in pairs), sum(n for _, n in pairs)


def _pct(num: float, den: float) -> str:
    return f"{100 * num / den:.1f}" if den else "–"


def _audio(recs: list[dict], which: str) -> str:
    """"WER / CER" of the generated audio (``which`` "") or of the recording (``"_recorded"``)."""
    return (f"{_pct(sum(r['audio_errors' + which] for r in recs), sum(r['ref_words'] for r in recs))} / "
            f"{_pct(sum(r['audio_char_errors' + which] for r in recs), sum(r['ref_chars'] for r in recs))}")


def _speaking(recs: list[dict]) -> str:
    """"codebook 0 / the rest" ranked first at the frames the agent speaks, % of ``recs``'s codes."""
    ok = np.sum([r["speaking_codes_ok"] for r in recs], axis=0) if recs else []
    n = np.sum([r["speaking_codes"] for r in recs], axis=0) if recs else []
    if len(n) == 0:
        return "–"
    return f"{_pct(ok[0], n[0])} / {_pct(ok[1:].sum(), n[1:].sum()) if len(n) > 1 else '–'}"


def _wer_cell(rec: dict) -> str:
    """A dialogue's text WER %; with no reference words, the words it said (errors in the total)."""
    if not rec["ref_words"] and rec["text_errors"]:
        return f"– ({rec['text_errors']} words said, no reference)"
    return _pct(rec["text_errors"], rec["ref_words"])


def _onset_cell(rec: dict) -> str:
    return "–" if rec["onset_error_s"] is None else f"{rec['onset_error_s']}"


def _onset_total(recs: list[dict]) -> str:
    """The median |onset error| over the dialogues that have one, or why there is none."""
    onsets = [abs(r["onset_error_s"]) for r in recs if r["onset_error_s"] is not None]
    if onsets:
        return f"{np.median(onsets):.2f} (of {len(onsets)})"
    return "– (no word said)" if any(r["ref_words"] for r in recs) else "– (no reference words)"


def _unreferenced_note(recs: list[dict]) -> str | None:
    """What the total text WER counts that no row's WER shows: words said in dialogues with no
    reference words, each an error."""
    said = [r for r in recs if not r["ref_words"] and r["text_errors"]]
    if not said or not any(r["ref_words"] for r in recs):  # (no total WER then: "–")
        return None
    return (f"(the text WER counts as errors the {sum(r['text_errors'] for r in said)} words said in "
            f"{len(said)} dialogue(s) whose agent says no word in the reference)")


def _bare(num, den: float) -> str:
    return "– (no oracle stream)" if num is None else _pct(num, den)


def _check_whisper(where: str) -> None:
    """The audio WER's Whisper (kame.bench.codec_quality.Whisper) can be imported (the `stt`
    extra); else its loader's NotAvailableError, said before any model loads."""
    from ..backend.stt.whisper import check_installed

    try:
        check_installed(also=NO_ASR)
    except NotAvailableError as exc:
        raise NotAvailableError(f"{where}: {exc}") from None


SETTINGS = FOLLOW_SETTINGS  # follow.json, in -o: what the results are of (was eval.json: mtbench's name)


def _spec(spec: str) -> str:
    """A front-end spec as recorded: a path made absolute, a link (OUT/latest) followed (was: as typed)."""
    return str(Path(spec).resolve()) if Path(spec).exists() else str(spec)


def settings(args, manifest: Path, codec_spec: str, device, sampling, n: int) -> dict:
    """follow.json's record: what a rerun needs to give the same results (dialogue i sampled with
    seed + i)."""
    return {"command": "kame eval follow", "manifest": str(Path(manifest).resolve()),
            "manifest_sha256": file_sha256(manifest), "dialogues": n, "limit": args.limit,
            "frontend": _spec(args.frontend), "codec": codec_spec, "device": str(device), "seed": args.seed,
            "temp": sampling.temp, "temp_text": sampling.temp_text, "greedy": sampling.greedy, "asr": not args.no_asr}


def main(args) -> int:
    # a failure or Ctrl-C before the first dialogue (a manifest missing, a front-end that cannot load) leaves -o as
    # it was: a new one removed again, with the parents made for it (was: left, empty)
    if not args.out:
        return _main(args, None)
    return FirstWrites(args.out).run(_main, args)


def _main(args, first: FirstWrites | None) -> int:
    from ..audio import write_wav
    from ..model.loaders import auto_device, parse_device
    from ..model.stepper import Sampling
    from ..train.batching import cached_dialogue, codes_cacheable, manifest_entries
    from ..train.data import read_dialogue
    from ..train.loading import load_for_training

    out = Path(args.out) if args.out else None
    where = "eval follow"
    if not args.no_asr:  # (before the front-end's load, which takes a while: was only after it)
        _check_whisper(where)
    try:  # (-o made and checked first: was a traceback after the front-end's load for one it could not make)
        if out is not None:
            try:
                check_output_folder(out, flag="-o")
            except ConfigError as exc:  # (a file, a folder it cannot make or write into: the shared words)
                raise ConfigError(f"{where}: {exc}; give -o a folder for the audio and results.jsonl") from None
            # (before anything is written in -o: a second run into it refused; it writes its results in one go)
            first.lock(where, "overwrite each other's audio and results")
            check_not_other(out, "kame eval follow")  # (an mtbench or pairwise folder: was overwritten)
        device = parse_device(auto_device(args.device))
        manifest, entries = manifest_entries(args.manifest, command=where)
        entries = entries[: args.limit]
        model, codec, codec_spec, tok, _ = load_for_training(args.frontend, args.codec, None, device,
                                                             command=where,
                                                             options="codec.spec is --codec, frontend.spec --frontend")
    except (ConfigError, DataError, CheckpointError) as exc:
        if not str(exc).startswith(f"{where}: "):  # (a codec's or a dialogue's own words)
            exc.args = (f"{where}: {exc}",)
        raise
    model.eval()
    sampling = Sampling() if args.temp is None else Sampling(temp=args.temp, temp_text=args.temp,
                                                             greedy=args.temp <= 0)
    asr = None
    if not args.no_asr:
        from ..bench.codec_quality import Whisper

        try:
            asr = Whisper()
        except NotAvailableError as exc:  # (its message names the `stt` extra; was: "the bench extra", none such)
            raise NotAvailableError(f"{where}: {exc}{NO_ASR}") from exc
    # kame train's rule for a set's caches: a codes.npz another codec or codebook count made (or any,
    # for a codec without a fingerprint) is said and its dialogue encoded on the fly (was: refused,
    # naming a Python API); here none is written
    cache = codes_cacheable(codec, codec_spec, _note)
    recs = []
    print(f"# kame eval follow: {args.frontend} ({codec_spec}, on {device}), {len(entries)} dialogues from "
          f"{args.manifest}, "
          f"sampling temp {sampling.temp}/{sampling.temp_text}{' greedy' if sampling.greedy else ''}, seed {args.seed}")
    head = ("| dialogue | text tokens ok % | ... with no oracle | semantic ok % | codes ok % while it speaks, "
            "codebook 0 / the rest | text WER % | onset error (s) | audio WER / CER % | ... the recording through "
            "the codec |")
    rule = "\n|---|---|---|---|---|---|---|---|---|"
    if args.per_dialogue:
        print(head + rule)
    if first is not None:
        first.keep()  # (from the first dialogue on, what this run writes in -o stays)
        for name in ("results.jsonl", SETTINGS):  # a rerun replaces the folder's run: the last run's results go
            (out / name).unlink(missing_ok=True)  # before this one's first audio (was: a rerun cut midway left
            # them beside its own audio, describing dialogues no longer there)
    for i, e in enumerate(entries):
        d = read_dialogue(e.path)
        rec, pcm = follow_one(model, codec, tok, d, sampling, (args.seed + i) % (MAX_SEED + 1), asr,
                              use_cache=cache and cached_dialogue(e.path, codec, _note, d=d) is not None)
        recs.append(rec)
        if out is not None:
            user = np.asarray(d.audio[:, 0], np.float32)
            n = max(len(user), len(pcm))
            write_wav(out / f"{Path(e.path).name}.wav", np.stack([np.pad(user, (0, n - len(user))),
                                                                 np.pad(pcm, (0, n - len(pcm)))], 1), SAMPLE_RATE)
        if args.per_dialogue:
            print(f"| {Path(e.path).name} | {_pct(rec['text_words_ok'], rec['text_words'])} | "
                  f"{_bare(rec['text_words_ok_no_oracle'], rec['text_words'])} | "
                  f"{_pct(rec['semantic_ok'], rec['semantic'])} | {_speaking([rec])} | "
                  f"{_wer_cell(rec)} | {_onset_cell(rec)} | "
                  f"{_audio([rec], '') if asr else '–'} | {_audio([rec], '_recorded') if asr else '–'} |",
                  flush=True)
    if out is not None:
        text = "".join(json.dumps(r) + "\n" for r in recs)
        write_replacing(out / "results.jsonl", lambda tmp: tmp.write_text(text), "results file")
        # (beside the results it is of: a run cut midway keeps the last run's pair; was written at its start)
        write_settings(out / SETTINGS, settings(args, manifest, codec_spec, device, sampling, len(entries)))
    tot = {k: sum(r[k] for r in recs) for k in ("text_words_ok", "text_words", "semantic_ok", "semantic",
                                                  "text_errors", "ref_words")}
    audio = " | ".join(_audio(recs, k) if asr else "–" for k in ("", "_recorded"))
    print(head.replace("| dialogue |", "| dialogues |").replace("onset error (s)", "onset error (s), median |x|")
          + rule)
    bare = None if not recs or recs[0]["text_words_ok_no_oracle"] is None else \
        sum(r["text_words_ok_no_oracle"] for r in recs)
    onset = _onset_total(recs)
    print(f"| {len(recs)} | {_pct(tot['text_words_ok'], tot['text_words'])} | {_bare(bare, tot['text_words'])} | "
          f"{_pct(tot['semantic_ok'], tot['semantic'])} | {_speaking(recs)} | "
          f"{_pct(tot['text_errors'], tot['ref_words'])} | {onset} "
          f"| {audio} |")
    note = _unreferenced_note(recs)
    if note:
        print(note)
    if asr is not None and len(recs) > 1:
        print(f"(chance: the generated audio's CER against the next dialogue's reply, not its own: "
              f"{_pct(*chance_cer(recs))} %; the audio says its own reply as far as its CER is below that)")
    return 0
