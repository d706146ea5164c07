"""The one config of the embedded codec (stored as JSON in the fitted file's metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...errors import ConfigError


@dataclass(frozen=True)
class EmbeddedCodecConfig:
    sample_rate: int = 24000
    frame_size: int = 1920  # 80 ms: one token frame (12.5 Hz), same layout as Mimi
    hop: int = 240  # 10 ms analysis sub-frame; frame_size // hop sub-frames per token frame
    n_fft: int = 1024  # spectrum FFT size (zero-padded window)
    win: int = 600  # spectrum window (25 ms hann); centred like the F0 window
    yin_win: int = 480  # F0 (YIN) integration window; the F0 look-back is 2 * yin_win samples
    n_mels: int = 64  # mel bands over fmin..sample_rate/2
    fmin: float = 40.0
    n_cep: int = 24  # mel-cepstral coefficients kept per sub-frame (the spectral envelope)
    f0_min: float = 50.0
    f0_max: float = 500.0
    # input level (AGC, features.input_gain): before analysis the encoder raises quiet input, one
    # gain per 80 ms frame, so that the upper envelope of its frame powers (dB re full scale)
    # reaches agc_target_db; never by more than agc_max_gain_db, never a cut (0 turns it off)
    agc_target_db: float = -28.0  # below speech (90th percentile of frame powers, synthesized and real: -14..-22)
    agc_start_db: float = -20.0  # the level a new session starts from (a typical speech level: no gain)
    agc_max_gain_db: float = 20.0
    agc_gate_db: float = -55.0  # frames below it never move the level
    agc_span_db: float = 20.0  # nor frames more than this far below the level (pauses, room noise)
    agc_rise: float = 0.3  # share of the gap closed per frame towards a louder frame
    agc_fall: float = 0.05  # ... towards a quieter one (~1.5 s to settle when a talker gets quieter)
    agc_startup_frames: int = 8  # a row's first frames above the gate: the level jumps up, sinks at agc_rise
    agc_ceiling_db: float = -18.0  # the gain never lifts a frame's power above this
    agc_voiced_only: bool = True  # only frames with a pitch (YIN, 62-500 Hz) move the level: never room noise
    agc_speech_hangover: int = 3  # ... and the frames up to this many after one (unvoiced speech sounds)
    log_floor: float = 1e-4  # floor of the mel power before the log (about -60 dB re full scale)
    w_f0: float = 3.0  # weight of one semitone of F0 in the VQ distance (cepstrum units = 1)
    # code a frame's F0 as the change from the previous frame's last decoded F0 (closed loop: the
    # encoder tracks what the decoder will decode), so a voice's pitch register costs no bits
    f0_delta: bool = True
    w_voicing: float = 4.0  # weight of the voicing strength (0..1) in the VQ distance
    pca_dim: int = 64  # the stacked per-frame vector is projected to this many dims before VQ
    num_codebooks: int = 8
    cardinality: int = 2048
    kmeans_iters: int = 20
    kmeans_points: int = 0  # each stage's k-means runs on this many random training vectors (0: all)
    augment: float = 0.0  # share of training clips passed through a random recording channel (channel.py)
    encode_beam: int = 16  # RVQ encoding keeps this many best partial code sequences per stage

    @property
    def subframes(self) -> int:
        return self.frame_size // self.hop

    @property
    def feat_dim(self) -> int:  # per sub-frame: n_cep cepstra + F0 (semitones) + voicing
        return self.n_cep + 2

    @property
    def f0_dims(self) -> list[int]:  # where the sub-frames' F0 sit in a stacked frame vector
        return [s * self.feat_dim + self.n_cep for s in range(self.subframes)]

    @property
    def lookback(self) -> int:  # samples of history the analysis window needs
        return 2 * self.yin_win

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EmbeddedCodecConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown embedded codec config keys: {unknown}")
        return cls(**data)
