"""The embedded codec's decoder: a small causal harmonic-plus-noise (source-filter) vocoder.

Per 10 ms sub-frame it gets a mel-cepstral envelope, F0 and voicing, and renders
  * voiced part: sum of harmonics k * F0 (up to 11.5 kHz), phase carried across sub-frames
    (no phase reconstruction needed), F0 and harmonic amplitudes ramped linearly from the
    previous sub-frame's values to this one's over the sub-frame;
  * noise part: white noise shaped by the envelope in 20 ms grains, overlap-added with a
    power-complementary (sqrt-hann) window, the grain's second half carried to the next call;
  * a sample-wise soft limiter (linear up to 0.9): the output never leaves [-1, 1].
Output of sub-frame n depends only on sub-frames <= n: streaming decode is exact, and the
whole-signal decode is the same code run over all frames.

    voc = Vocoder(cfg, correction)        # correction [n_mels]: log-mel offset fitted at `kame codec fit`
    st = voc.new_state(batch)
    pcm = voc.render(st, feats)           # feats [B, N, n_cep + 2] -> pcm [B, N * hop]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import EmbeddedCodecConfig
from .features import dct_matrix, hz_to_mel

_NOISE_LEN = 1 << 16
_F_MAX = 11500.0  # harmonics fade out between F_MAX - 500 Hz and F_MAX
_LOGMEL_MAX = 12.0  # cap of the decoded log-mel envelope
_KNEE = 0.9  # soft limiter: linear up to this amplitude


def soft_limit(x: torch.Tensor, knee: float = _KNEE) -> torch.Tensor:
    """Identity for |x| <= knee, then a tanh curve approaching 1: decoded audio always lies in
    [-1, 1], whatever the codes (arbitrary codes from an untrained front-end can
    ask for far louder sound). Sample-wise, so streaming output is unchanged."""
    over = x.abs() - knee
    bent = torch.sign(x) * (knee + (1.0 - knee) * torch.tanh(over / (1.0 - knee)))
    return torch.where(over > 0, bent, x)


@dataclass
class VocoderState:
    phase: torch.Tensor  # [B] float64, cycles of the fundamental
    f0: torch.Tensor  # [B] Hz at the end of the last sub-frame
    amp: torch.Tensor  # [B, K] harmonic amplitudes at the end of the last sub-frame
    tail: torch.Tensor  # [B, hop] second half of the last noise grain
    counter: torch.Tensor  # [B] int64 read position in the noise table
    started: torch.Tensor  # [B] bool: has rendered at least one sub-frame since reset

    def reset(self, rows: torch.Tensor) -> None:
        self.phase[rows] = 0.0
        self.f0[rows] = 100.0
        self.amp[rows] = 0.0
        self.tail[rows] = 0.0
        self.counter[rows] = 0
        self.started[rows] = False


class Vocoder:
    def __init__(self, cfg: EmbeddedCodecConfig, correction: torch.Tensor | None = None) -> None:
        self.cfg = cfg
        H, sr = cfg.hop, cfg.sample_rate
        self.idct = dct_matrix(cfg.n_mels)[: cfg.n_cep]  # [C, M]: logmel = cep @ idct
        self.correction = torch.zeros(cfg.n_mels) if correction is None else correction.float()
        lo, hi = float(hz_to_mel(cfg.fmin)), float(hz_to_mel(sr / 2))
        self._mel_lo, self._mel_step = lo, (hi - lo) / (cfg.n_mels + 1)
        w = torch.hann_window(cfg.win, periodic=False, dtype=torch.float64)
        self.s2 = float(w.square().sum())  # analysis window energy: E|X|^2 = sigma^2 * s2 for noise
        self.K = int(math.ceil(sr / 2 / cfg.f0_min))
        self.k = torch.arange(1, self.K + 1, dtype=torch.float64)  # harmonic numbers
        self.ramp = torch.arange(1, H + 1, dtype=torch.float64) / H  # [H]
        self.ramp_f, self.k_f = self.ramp.float(), self.k.float()
        self.noise_win = torch.hann_window(2 * H, periodic=True).sqrt()
        self.noise_pos = self._mel_pos(torch.fft.rfftfreq(2 * H, 1.0 / sr).double())  # [H+1]
        g = torch.Generator().manual_seed(1234)
        self.noise = torch.randn(_NOISE_LEN + 2 * H, generator=g)

    def new_state(self, batch: int) -> VocoderState:
        return VocoderState(
            phase=torch.zeros(batch, dtype=torch.float64), f0=torch.full((batch,), 100.0, dtype=torch.float64),
            amp=torch.zeros(batch, self.K), tail=torch.zeros(batch, self.cfg.hop),
            counter=torch.zeros(batch, dtype=torch.long), started=torch.zeros(batch, dtype=torch.bool),
        )

    def _mel_pos(self, f: torch.Tensor) -> torch.Tensor:
        """Fractional mel-band index of frequencies f (Hz), clamped to the band range."""
        u = (hz_to_mel(f) - self._mel_lo) / self._mel_step - 1.0
        return u.clamp(0.0, self.cfg.n_mels - 1.0)

    @staticmethod
    def _interp(logmel: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """logmel [B, M], pos [B, Q] or [Q] fractional band index -> [B, Q]."""
        pos = pos.expand(logmel.shape[0], -1) if pos.dim() == 1 else pos
        i0 = pos.floor().long().clamp(max=logmel.shape[1] - 2)
        frac = (pos - i0).float()
        a, b = torch.gather(logmel, 1, i0), torch.gather(logmel, 1, i0 + 1)
        return a + frac * (b - a)

    def render(self, st: VocoderState, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, N, n_cep + 2] -> pcm [B, N * hop] (float32)."""
        cfg, H = self.cfg, self.cfg.hop
        B, N, _ = feats.shape
        # [B, N, M]; capped far above any real speech (a full-scale tone peaks near 10) so
        # arbitrary codes cannot overflow exp()
        logmel = (feats[..., : cfg.n_cep] @ self.idct + self.correction).clamp(max=_LOGMEL_MAX)
        f0 = (100.0 * torch.pow(2.0, feats[..., cfg.n_cep].double() / 12.0)).clamp(cfg.f0_min, cfg.f0_max)
        voicing = feats[..., cfg.n_cep + 1].clamp(0.0, 1.0)
        out = []
        for n in range(N):
            env = logmel[:, n]  # [B, M]
            f = f0[:, n]  # [B]
            v = voicing[:, n]
            # --- harmonics: amplitudes at k * f0 (power spectral density -> sinusoid amplitude)
            f_prev = torch.where(st.started, st.f0, f)
            # only harmonics below F_MAX for the lowest F0 now or before can be non-zero
            K = min(self.K, int(math.ceil(_F_MAX / float(torch.minimum(f, f_prev).min()))))
            k = self.k[:K]
            fk = k[None] * f[:, None]  # [B, K]
            psd = (self._interp(env, self._mel_pos(fk)).exp() - cfg.log_floor).clamp(min=0.0)
            amp = torch.sqrt(4.0 * f[:, None].float() * psd / (self.s2 * cfg.sample_rate))
            amp = amp * ((_F_MAX - fk) / 500.0).clamp(0.0, 1.0).float() * v[:, None].sqrt()
            freq = f_prev[:, None] + self.ramp[None] * (f - f_prev)[:, None]  # [B, H] Hz
            phase = st.phase[:, None] + torch.cumsum(freq, 1) / cfg.sample_rate  # [B, H] cycles, < 6
            a_prev = st.amp[:, :K]
            a = a_prev[:, None] + self.ramp_f[None, :, None] * (amp - a_prev)[:, None]  # [B, H, K]
            # [B, H, K] cycles reduced to [0, 1) in float64: cos then sees small arguments, so its
            # result does not depend on the batch size (vectorised vs scalar paths agree)
            cyc = torch.frac(phase[..., None] * k).float()
            voiced = (a * torch.cos(2.0 * math.pi * cyc)).sum(-1)  # [B, H]
            st.phase = torch.remainder(phase[:, -1], 1.0)
            st.f0 = f
            st.amp = torch.zeros_like(st.amp)
            st.amp[:, :K] = amp
            # --- noise: one 2*hop grain, shaped by the envelope, overlap-added
            idx = st.counter[:, None] + torch.arange(2 * H)  # [B, 2H]
            seg = self.noise[idx]
            sigma = (self._interp(env, self.noise_pos).exp() - cfg.log_floor).clamp(min=0.0) / self.s2
            sigma = torch.sqrt(sigma * (1.0 - v)[:, None])  # [B, H+1]
            grain = torch.fft.irfft(torch.fft.rfft(seg) * sigma, n=2 * H) * self.noise_win
            out.append(voiced + st.tail + grain[:, :H])
            st.tail = grain[:, H:]
            st.counter = (st.counter + 2 * H) % _NOISE_LEN
            st.started = torch.ones_like(st.started)
        return soft_limit(torch.cat(out, 1)) if out else torch.zeros(B, 0)
