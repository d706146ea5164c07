"""Kyutai streaming STT (``kyutai/stt-1b-en_fr``, ``kyutai/stt-2.6b-en``) run by kame's own LM
(dep_q = 0: text only) and kame's Mimi: ``kyutai:PATH`` or ``kyutai:hf://REPO``.

Per 80 ms frame: Mimi encodes the audio into ``n_q`` codes, the LM stepper consumes them and
samples one text token (greedy by default). SentencePiece pieces starting with "▁" begin a
new word; pad (3) / end-of-padding (0) tokens carry no text. The text lags the audio by the
checkpoint's ``stt_config.audio_delay_seconds`` (0.5 s for stt-1b): a token sampled after
frame k is placed at (k + 1) * 0.08 - delay. Utterances come from kame's VAD (like the other
STTs); each starts from a fresh LM/Mimi state (after ``audio_silence_prefix_seconds`` of
silence) and is flushed at its end with ``delay`` + 0.24 s of silence so the last words come
out. Each stream's worker thread has its own stepper and codec state; weights are shared.

    stt = KyutaiSTT("hf://kyutai/stt-1b-en_fr")   # from the HF cache; or a local folder
    async for tr in stt.stream(frames): ...

On this 2-core CPU the real 1B model is not real time; it is meant for GPU deployments.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError, ConfigError, NotAvailableError
from ..types import FRAME_S, FRAME_SIZE, SAMPLE_RATE, Word
from .streaming import Recognizer, SegmentedSTT



class _Decoder:
    """One stream's state: a Mimi stream + an LM stepper (batch 1)."""

    def __init__(self, stt: "KyutaiSTT") -> None:
        self.stt = stt
        self.codec = stt.mimi.stream(1)
        self.stepper = stt.frontend.stepper(1, stt.sampling)

    def reset(self) -> None:
        self.codec.reset()
        self.stepper.reset()

    @torch.no_grad()
    def step(self, pcm24k: np.ndarray) -> int:
        """One 80 ms frame [1920] -> the text token sampled for it."""
        codes = self.codec.encode_frame(torch.from_numpy(pcm24k).float()[None])  # [1, K]
        out = self.stepper.step(codes[:, : self.stt.n_q])
        return int(out.sampled_text[0])


class KyutaiRecognizer(Recognizer):
    """Feeds an utterance frame by frame (24 kHz, as Mimi wants); assembles words from pieces."""

    sample_rate = SAMPLE_RATE

    def __init__(self, stt: "KyutaiSTT", dec: _Decoder) -> None:
        self.stt, self.dec = stt, dec
        dec.reset()
        self.steps = 0  # frames stepped in this utterance (after the prefix)
        self.audio_steps = 0  # of which real audio (not the final flush)
        self.words: list[list] = []  # [text, start, end]
        for _ in range(stt.prefix_frames):  # the silence Kyutai's models expect first
            dec.step(np.zeros(FRAME_SIZE, np.float32))

    def _token(self, tok: int) -> None:
        self.steps += 1
        if tok in self.stt.skip_ids or not 0 <= tok < self.stt.sp.get_piece_size():
            return
        piece = self.stt.sp.id_to_piece(tok)
        t = max(0.0, self.steps * FRAME_S - self.stt.delay)  # utterance time of this token
        t = min(t, self.audio_steps * FRAME_S)  # flush tokens still belong to the real audio
        if piece.startswith("▁") or not self.words:  # a new word
            self.words.append([piece.removeprefix("▁"), max(0.0, t - FRAME_S), t])
        else:
            self.words[-1][0] += piece
            self.words[-1][2] = t

    def accept(self, pcm24k: np.ndarray) -> None:
        self.audio_steps += 1
        self._token(self.dec.step(pcm24k))

    def current(self) -> list[Word]:
        return [Word(w, s, max(s, e)) for w, s, e in self.words if w]

    def partial(self) -> list[Word] | None:
        return self.current()

    def final(self, speech_end: float | None = None) -> list[Word]:
        for _ in range(self.stt.flush_frames):  # let the delayed text of the last words out
            self._token(self.dec.step(np.zeros(FRAME_SIZE, np.float32)))
        return self.current()


class KyutaiSTT(SegmentedSTT):
    name = "kyutai"
    partial_interval = 0.08

    def __init__(self, source: str | Path, *, device: str = "cpu", dtype=None, mimi: str | Path | None = None,
                 tokenizer: str | Path | None = None, greedy: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        try:
            import sentencepiece
        except ImportError as exc:
            raise NotAvailableError("kyutai STT needs sentencepiece, one of kame's own dependencies: reinstall "
                                    "kame (in its checkout: .venv/bin/pip install -e .)") from exc
        from ...codec.mimi import load_mimi
        from ...model import Frontend, Sampling, load_frontend

        if not source:
            raise ConfigError("kyutai STT needs a checkpoint: kyutai:/path/to/folder or kyutai:hf://kyutai/stt-1b-en_fr")
        if not str(source).startswith("hf:"):  # (was: "front-end checkpoint ... does not exist")
            from ...paths import local_path

            if not local_path(str(source)).exists():
                raise CheckpointError(f"Kyutai STT checkpoint {str(source)!r} does not exist (kyutai:FOLDER holding its "
                                      f"config.json and weights, or kyutai:hf://kyutai/stt-1b-en_fr)")
        model, info = load_frontend(str(source), device=device, dtype=dtype, expect="stt")
        cfg = model.cfg
        if cfg.dep_q != 0:
            raise ConfigError(f"{source} is not a speech-to-text checkpoint: dep_q = {cfg.dep_q} (Kyutai STT has 0)")
        mimi_path = mimi or info.mimi
        tok_path = tokenizer or info.tokenizer
        if mimi_path is None or tok_path is None:
            raise CheckpointError(f"{source}: missing companion files {info.missing_files} (Mimi / SentencePiece)")
        self.frontend = Frontend(model, info)
        self.n_q = cfg.n_user_q
        self.mimi = load_mimi(mimi_path, num_codebooks=self.n_q, device=device)
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(tok_path))
        self.sampling = Sampling(greedy=True) if greedy else info.sampling
        stt_cfg = cfg.meta.get("stt_config") or {}
        self.delay = float(stt_cfg.get("audio_delay_seconds", 0.5))
        self.prefix_frames = round(float(stt_cfg.get("audio_silence_prefix_seconds", 0.0)) / FRAME_S)
        self.flush_frames = round((self.delay + 0.24) / FRAME_S)
        self.skip_ids = {cfg.existing_text_padding_id, cfg.existing_text_end_padding_id, cfg.text_card}
        self._local = threading.local()  # one _Decoder per worker thread (= per stream)

    def new_recognizer(self) -> Recognizer:
        dec = getattr(self._local, "dec", None)
        if dec is None:
            dec = self._local.dec = _Decoder(self)
        return KyutaiRecognizer(self, dec)


def create(arg: str | None = None, **kwargs) -> KyutaiSTT:
    if arg and not arg.startswith(("/", ".", "~")) and "://" not in arg and not Path(arg).exists():
        raise ConfigError(f"kyutai STT: {arg!r} is neither a folder nor hf://ORG/REPO")
    return KyutaiSTT(arg, **kwargs)
