"""Causal speech analysis for the embedded codec: mel-cepstral envelope, F0 (YIN) and voicing
every 10 ms, each from a window that ends at its sub-frame's end (so streaming needs no
look-ahead). Also the mel helpers the vocoder uses to turn cepstra back into a spectrum.

    an = Analyzer(cfg)
    feats, last_f0 = an.features(windows, last_f0)   # windows [B, N, lookback + hop] -> [B, N, n_cep + 2]

Per sub-frame feature: [c_0 .. c_{n_cep-1}, F0 in semitones re 100 Hz, voicing in 0..1].
Unvoiced sub-frames carry the last voiced F0 (``last_f0`` is the per-row state).

Before analysis the encoder levels its input (``input_gain``, an AGC with one gain per 80 ms
frame): the codebooks were fitted on speech at the synthesizers' level, and speech 20 dB
quieter came through them with ~20 more whisper WER points lost (BENCHMARKS.md).

    state = LevelState.new(batch_size, cfg)
    gain = agc_gain(frames, state, cfg, an)           # frames [B, F, frame_size] -> gain [B, F]
    # = input_gain(frames, state, cfg, voiced_frames(frames, an)): the speech cue, then the AGC
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import ConfigError
from .config import EmbeddedCodecConfig


_NEVER = 1 << 20  # "frames since the last voiced one" of a row that has not heard one


@dataclass
class LevelState:
    """The AGC's per-row state (see ``input_gain``); a session (row) starts at ``new``."""

    db: torch.Tensor  # [B] float64: the tracked speech level, dB re full scale
    heard: torch.Tensor  # [B] int64: frames that have moved it since the row started
    peak: torch.Tensor  # [B] float64: the loudest of those frames within the start-up (dB)
    quiet: torch.Tensor  # [B] int64: frames since the last voiced one (the speech cue's hangover)

    @classmethod
    def new(cls, batch_size: int, cfg: EmbeddedCodecConfig) -> "LevelState":
        return cls(torch.full((batch_size,), cfg.agc_start_db, dtype=torch.float64),
                   torch.zeros(batch_size, dtype=torch.long), torch.full((batch_size,), -200.0, dtype=torch.float64),
                   torch.full((batch_size,), _NEVER, dtype=torch.long))

    def reset(self, rows: torch.Tensor, cfg: EmbeddedCodecConfig) -> None:
        self.db[rows] = cfg.agc_start_db
        self.heard[rows] = 0
        self.peak[rows] = -200.0
        self.quiet[rows] = _NEVER


_CUE_MIN_F0 = 62.0  # Hz: the speech cue ignores periods of mains hum (50/60 Hz)


def voiced_frames(frames: torch.Tensor, an: "Analyzer") -> torch.Tensor:
    """The AGC's speech cue. frames [B, F, frame_size] -> [B, F] bool: YIN finds a pitch
    (62..f0_max Hz, voicing > 0.5 as the analysis defines it) in at least one of the frame's
    YIN windows (2 * yin_win samples, half overlapping). Room noise, hiss, rumble and hum are
    not voiced; any talker is within ~0.1 s of starting a word."""
    W = 2 * an.cfg.yin_win
    win = frames.float().unfold(-1, W, W // 2)  # [B, F, n, W]
    f0, aper = an.yin(win)
    return ((an.voicing(aper) > 0.5) & (f0 >= _CUE_MIN_F0)).any(-1)


def input_gain(frames: torch.Tensor, state: LevelState, cfg: EmbeddedCodecConfig,
               voiced: torch.Tensor | None = None) -> torch.Tensor:
    """The encoder's AGC. frames [B, F, frame_size] (raw input, in order), state (updated in
    place) -> linear gain for each frame [B, F] float32.

    The level follows the upper envelope of the frame powers: it rises quickly towards a louder
    frame (cfg.agc_rise of the gap per frame) and sinks slowly towards a quieter one
    (cfg.agc_fall), and frames more than cfg.agc_span_db below it or below cfg.agc_gate_db
    (pauses, room noise) leave it alone. Start-up: over a row's first cfg.agc_startup_frames
    frames above the gate the level jumps up to any louder frame and sinks at cfg.agc_rise,
    with no span, but not below the loudest of those frames, so a quiet talker is levelled
    within ~0.4 s instead of ~1.5 s while a talker at speech level gets (almost) no gain. When
    ``voiced`` ([B, F] bool, ``voiced_frames``) is given and cfg.agc_voiced_only is set, only
    speech moves the level: frames with a pitch and the cfg.agc_speech_hangover frames after
    one (the unvoiced sounds between vowels). Room noise before the first word, or more than
    that far into a pause, neither sets the level nor gets a gain. The gain
    lifts the level to cfg.agc_target_db (at most cfg.agc_max_gain_db, never a cut) but never
    lifts a frame above cfg.agc_ceiling_db (a talker who starts after a stretch of quiet room
    noise is not blasted). A frame's gain depends on that frame and the ones before it only,
    so streaming and whole-signal encoding agree."""
    db = 10.0 * torch.log10(frames.double().square().mean(-1) + 1e-12)  # [B, F]
    level, heard, peak, quiet = state.db.double().clone(), state.heard.clone(), state.peak.clone(), state.quiet.clone()
    gains = []
    for f in range(db.shape[1]):
        e = db[:, f]
        start = heard < cfg.agc_startup_frames
        floor = torch.where(start, torch.full_like(level, cfg.agc_gate_db),
                            torch.clamp(level - cfg.agc_span_db, min=cfg.agc_gate_db))
        moves = e > floor
        if voiced is not None and cfg.agc_voiced_only:
            quiet = torch.where(voiced[:, f], 0, torch.clamp(quiet + 1, max=_NEVER))
            moves = moves & (quiet <= cfg.agc_speech_hangover)
        up = e > level
        rate = torch.where(start, torch.where(up, 1.0, cfg.agc_rise),
                           torch.where(up, cfg.agc_rise, cfg.agc_fall)).double()
        level = torch.where(moves, level + rate * (e - level), level)
        peak = torch.where(moves & start, torch.maximum(peak, e), peak)
        level = torch.where(start, torch.maximum(level, peak), level)
        heard = heard + moves.long()
        g_db = (cfg.agc_target_db - level).clamp(0.0, cfg.agc_max_gain_db)
        g_db = torch.minimum(g_db, (cfg.agc_ceiling_db - e).clamp(min=0.0))
        gains.append(10.0 ** (g_db / 20.0))
    state.db, state.heard, state.peak, state.quiet = level, heard, peak, quiet
    return torch.stack(gains, 1).float() if gains else torch.ones(db.shape, dtype=torch.float32)


def agc_gain(frames: torch.Tensor, state: LevelState, cfg: EmbeddedCodecConfig, an: "Analyzer") -> torch.Tensor:
    """The encoder's AGC as the codec runs it: the speech cue (if cfg.agc_voiced_only), then
    ``input_gain``. frames [B, F, frame_size] -> gain [B, F]; state updated in place."""
    voiced = voiced_frames(frames, an) if cfg.agc_voiced_only else None
    return input_gain(frames, state, cfg, voiced)


def level_input(pcm: torch.Tensor, cfg: EmbeddedCodecConfig, an: "Analyzer | None" = None) -> torch.Tensor:
    """pcm [B, T] -> pcm [B, T] with the encoder's AGC applied from a fresh state (frames cut
    from sample 0, the last one zero-padded), as the fit levels its channel-augmented clips (the
    encoder levels frame by frame: EmbeddedStream, with the same agc_gain)."""
    B, T = pcm.shape
    F = -(-T // cfg.frame_size)
    frames = torch.zeros(B, F * cfg.frame_size, dtype=pcm.dtype)
    frames[:, :T] = pcm
    frames = frames.view(B, F, cfg.frame_size)
    gain = agc_gain(frames, LevelState.new(B, cfg), cfg, an or Analyzer(cfg))
    return (frames * gain[..., None].to(pcm.dtype)).reshape(B, -1)[:, :T]


def hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_centres(cfg: EmbeddedCodecConfig) -> torch.Tensor:
    """[n_mels + 2] band edges/centres in Hz (float64)."""
    lo, hi = hz_to_mel(cfg.fmin), hz_to_mel(cfg.sample_rate / 2)
    return mel_to_hz(torch.linspace(float(lo), float(hi), cfg.n_mels + 2, dtype=torch.float64))


def mel_filters(cfg: EmbeddedCodecConfig) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, each row summing to 1 (band-average power)."""
    edges = mel_centres(cfg)
    freqs = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft
    lo, c, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = torch.clamp(torch.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), min=0.0)
    empty = w.sum(1) == 0  # a band narrower than one bin: use its nearest bin
    if empty.any():
        nearest = torch.argmin((freqs[None] - c[empty]).abs(), dim=1)
        w[empty.nonzero()[:, 0], nearest] = 1.0
    return (w / w.sum(1, keepdim=True)).float()


def dct_matrix(n: int) -> torch.Tensor:
    """[n, n] orthonormal DCT-II: cep = logmel @ D.T, logmel = cep @ D."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


class Analyzer:
    """Feature extraction over causal windows (all tensors float32, CPU)."""

    def __init__(self, cfg: EmbeddedCodecConfig) -> None:
        self.cfg = cfg
        self.mel = mel_filters(cfg)  # [M, n_fft/2+1]
        self.dct = dct_matrix(cfg.n_mels)[: cfg.n_cep]  # [C, M]
        self.window = torch.hann_window(cfg.win, periodic=False)
        self.tau_min = int(cfg.sample_rate // cfg.f0_max)
        self.tau_max = int(math.ceil(cfg.sample_rate / cfg.f0_min))
        if self.tau_max > cfg.yin_win:
            raise ConfigError(f"embedded codec config: yin_win ({cfg.yin_win} samples) must cover the longest "
                              f"pitch period, {self.tau_max} samples at f0_min {cfg.f0_min} Hz")

    def logmel(self, seg: torch.Tensor) -> torch.Tensor:
        """seg [..., win] -> log mel power [..., n_mels]."""
        spec = torch.fft.rfft(seg * self.window, n=self.cfg.n_fft)
        power = spec.real.square() + spec.imag.square()
        return torch.log(power @ self.mel.T + self.cfg.log_floor)

    def yin(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., 2 * yin_win] -> (f0 Hz [...], aperiodicity = min CMND [...])."""
        W, cfg = self.cfg.yin_win, self.cfg
        n = 1 << (2 * W - 1).bit_length()
        a = x[..., :W]
        r = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(a, n=n).conj(), n=n)[..., : W + 1]
        sq = torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x.square(), -1)], -1)
        e_tau = sq[..., W : 2 * W + 1] - sq[..., : W + 1]  # sum_{t=tau}^{tau+W-1} x_t^2
        d = (e_tau[..., :1] + e_tau - 2.0 * r).clamp(min=0.0)  # [..., W+1], d[0] = 0
        tau = torch.arange(1, W + 1, dtype=x.dtype)
        cmnd = d[..., 1:] * tau / torch.cumsum(d[..., 1:], -1).clamp(min=1e-12)  # tau = 1..W
        lo, hi = self.tau_min - 1, self.tau_max  # index i <-> tau = i + 1
        c = cmnd[..., lo:hi]
        below = c < 0.2
        first = torch.where(below.any(-1), below.float().argmax(-1), c.argmin(-1))
        # the local minimum right after the first dip below threshold
        span = torch.arange(24)
        idx = (first[..., None] + span).clamp(max=c.shape[-1] - 1)
        vals = torch.gather(c, -1, idx)
        best = torch.gather(idx, -1, vals.argmin(-1, keepdim=True))[..., 0]
        # parabolic refinement
        i0 = (best - 1).clamp(min=0)
        i2 = (best + 1).clamp(max=c.shape[-1] - 1)
        y0, y1, y2 = (torch.gather(c, -1, i[..., None])[..., 0] for i in (i0, best, i2))
        den = y0 - 2 * y1 + y2
        shift = torch.where(den.abs() > 1e-9, 0.5 * (y0 - y2) / den, torch.zeros_like(den)).clamp(-0.5, 0.5)
        period = best.to(x.dtype) + lo + 1 + shift
        return cfg.sample_rate / period, y1

    @staticmethod
    def voicing(aper: torch.Tensor) -> torch.Tensor:
        """YIN aperiodicity -> voicing strength in 0..1 (1 below 0.15, 0 above 0.5)."""
        return ((0.5 - aper) / 0.35).clamp(0.0, 1.0)

    def features(self, win: torch.Tensor, last_f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """win [B, N, 2 * yin_win] causal windows (one per sub-frame, in time order);
        last_f0 [B] Hz of the last voiced sub-frame before them.
        Returns feats [B, N, n_cep + 2] and the new last_f0 [B]."""
        cfg = self.cfg
        L = win.shape[-1]
        mid = L - cfg.yin_win  # centre of the YIN analysis
        seg = win[..., mid - cfg.win // 2 : mid + cfg.win - cfg.win // 2]
        cep = self.logmel(seg) @ self.dct.T  # [B, N, C]
        f0, aper = self.yin(win)
        energy = win[..., cfg.yin_win // 2 : cfg.yin_win // 2 + cfg.yin_win].square().mean(-1)
        voicing = self.voicing(aper) * (energy > 1e-6)
        voiced = voicing > 0.5
        # carry the last voiced F0 through unvoiced sub-frames
        n = win.shape[1]
        pos = torch.where(voiced, torch.arange(n).expand_as(voiced), torch.full_like(voiced, -1, dtype=torch.long))
        pos = torch.cummax(pos, dim=1).values
        held = torch.gather(f0, 1, pos.clamp(min=0))
        held = torch.where(pos >= 0, held, last_f0[:, None].expand_as(held))
        semis = 12.0 * torch.log2(held / 100.0)
        feats = torch.cat([cep, semis[..., None], voicing[..., None]], -1)
        return feats, held[:, -1].clone()


def analyze(pcm: torch.Tensor, cfg: EmbeddedCodecConfig, an: "Analyzer | None" = None,
            last_f0: float = 120.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-signal analysis of pcm [B, T] (zero history, padded to whole frames).
    Returns (feats [B, N, n_cep + 2], logmel [B, N, n_mels]), N = sub-frames."""
    an = an or Analyzer(cfg)
    B, T = pcm.shape
    F = -(-T // cfg.frame_size)
    padded = torch.zeros(B, cfg.lookback + F * cfg.frame_size)
    padded[:, cfg.lookback : cfg.lookback + T] = pcm
    win = frame_windows(padded, cfg)
    mid = cfg.lookback - cfg.yin_win
    logmel = an.logmel(win[..., mid - cfg.win // 2 : mid + cfg.win - cfg.win // 2])
    feats, _ = an.features(win, torch.full((B,), last_f0))
    return feats, logmel


def frame_windows(padded: torch.Tensor, cfg: EmbeddedCodecConfig) -> torch.Tensor:
    """padded [B, lookback + T] (T a multiple of hop) -> [B, T // hop, lookback] windows, the
    n-th ending at sample lookback + (n + 1) * hop."""
    return padded[:, cfg.hop :].unfold(1, cfg.lookback, cfg.hop)
