"""Mimi in kame: the network (``MimiModel``), the ``Codec`` wrapper and its batched stream.

    pcm [B, 1, T] --SEANet encoder--> [B, 512, T/960] (25 Hz) --transformer--> --downsample conv-->
    [B, 512, F] (12.5 Hz) --split RVQ--> codes [B, K, F]
    codes --RVQ decode--> [B, 512, F] --upsample convtr--> (25 Hz) --transformer--> --SEANet decoder-->
    pcm [B, 1, F * 1920]

Everything is causal; ``MimiStream`` runs it 80 ms at a time with per-row state (sessions join
and leave: ``reset(rows)`` clears only those rows; ``encode_rows`` / ``decode_rows`` code some rows
only, the others' state untouched: the runtime codes the rows in use). ``python -m kame.codec.mimi``
runs a quick round trip.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ...paths import file_sha256
from ..base import (Codec, CodecStream, check_batch_size, check_codes, check_frame, check_num_codebooks, check_pcm,
                    put_rows, rows_index, rows_mask, take_rows)
from .config import MimiConfig
from .quantizer import SplitResidualVQ
from .seanet import ConvDownsample, ConvState, ConvTrState, ConvTrUpsample, SEANetDecoder, SEANetEncoder, SeqState
from .transformer import ProjectedTransformer, TransformerState


@dataclass
class EncoderState:
    seanet: SeqState
    transformer: TransformerState
    downsample: ConvState

    def reset(self, mask: torch.Tensor) -> None:
        self.seanet.reset(mask)
        self.transformer.reset(mask)
        self.downsample.reset(mask)


@dataclass
class DecoderState:
    upsample: ConvTrState
    transformer: TransformerState
    seanet: SeqState

    def reset(self, mask: torch.Tensor) -> None:
        self.upsample.reset(mask)
        self.transformer.reset(mask)
        self.seanet.reset(mask)


class MimiModel(nn.Module):
    """The Mimi network; ``state_dict()`` keys and shapes are those of the published checkpoint."""

    def __init__(self, cfg: MimiConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        self.decoder = SEANetDecoder(cfg)
        self.encoder_transformer = ProjectedTransformer(cfg)
        self.decoder_transformer = ProjectedTransformer(cfg)
        self.quantizer = SplitResidualVQ(cfg)
        self.downsample = ConvDownsample(cfg.resample_stride, cfg.dimension)
        self.upsample = ConvTrUpsample(cfg.resample_stride, cfg.dimension)

    def init_encoder_state(self, batch_size: int) -> EncoderState:
        return EncoderState(self.encoder.init_state(batch_size), self.encoder_transformer.init_state(batch_size),
                            self.downsample.init_state(batch_size))

    def init_decoder_state(self, batch_size: int) -> DecoderState:
        return DecoderState(self.upsample.init_state(batch_size), self.decoder_transformer.init_state(batch_size),
                            self.decoder.init_state(batch_size))

    def encode_latent(self, pcm: torch.Tensor, state: EncoderState) -> torch.Tensor:
        # pcm [B, 1, F * frame_size] -> unquantized latent [B, dimension, F]
        emb = self.encoder(pcm, state.seanet)  # [B, D, 2F] at 25 Hz
        emb = self.encoder_transformer(emb, state.transformer)
        return self.downsample(emb, state.downsample)  # [B, D, F]

    def encode(self, pcm: torch.Tensor, state: EncoderState, num_codebooks: int) -> torch.Tensor:
        # pcm [B, 1, F * frame_size] -> codes [B, K, F]
        return self.quantizer.encode(self.encode_latent(pcm, state), num_codebooks)

    def decode(self, codes: torch.Tensor, state: DecoderState) -> torch.Tensor:
        # codes [B, K, F] -> pcm [B, 1, F * frame_size]
        emb = self.upsample(self.quantizer.decode(codes), state.upsample)  # [B, D, 2F]
        emb = self.decoder_transformer(emb, state.transformer)
        return self.decoder(emb, state.seanet)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- the Codec
_CHUNK_FRAMES = 25  # whole-signal encode/decode runs 2 s at a time through the streaming state


class MimiCodec(Codec):
    """Mimi behind kame's ``Codec`` interface (see kame.codec.base).

    ``codec.encode(pcm [B, T])`` -> codes [B, K, F]; ``codec.decode(codes)`` -> pcm [B, F * 1920];
    ``codec.stream(B)`` for 80 ms steps. ``num_codebooks`` (K) can be changed at any time with
    ``set_num_codebooks`` (1 semantic + K-1 acoustic; the checkpoint holds ``cfg.n_q``).
    """

    def __init__(self, model: MimiModel, num_codebooks: int | None = None, source: Path | None = None):
        self.model = model.eval()
        self.source = source  # the weights file it was loaded from (None: random or built in memory)
        self._fingerprint: str | None = None
        self.cfg = model.cfg
        self.sample_rate = self.cfg.sample_rate
        self.frame_rate = self.cfg.frame_rate
        self.frame_size = self.cfg.frame_size
        self.cardinality = self.cfg.bins
        self.num_codebooks = self.cfg.num_codebooks
        self.set_num_codebooks(self.cfg.num_codebooks if num_codebooks is None else num_codebooks)

    @property
    def device(self) -> torch.device:
        return self.model.downsample.conv.inner.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.downsample.conv.inner.weight.dtype

    @property
    def fingerprint(self) -> str | None:
        """The sha256 of its weights file (None: random weights), computed on first use (~1 s for
        the published file; a Hugging Face cache names its blob by it: taken from there)."""
        if self._fingerprint is None and self.source is not None:
            blob = Path(self.source).resolve()
            lfs = blob.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", blob.name)
            self._fingerprint = blob.name if lfs else file_sha256(blob)
        return self._fingerprint

    @property
    def total_codebooks(self) -> int:
        return self.cfg.n_q

    @property
    def bitrate(self) -> float:
        """Bits per second of the token stream (K * log2(cardinality) * frame_rate)."""
        return self.num_codebooks * math.log2(self.cardinality) * self.frame_rate

    def set_num_codebooks(self, n: int) -> None:
        self.num_codebooks = check_num_codebooks(n, self.cfg.n_q_semantic, self.cfg.n_q)

    # ---- input checks (kame.codec.base: the same errors from every codec)
    def _check_pcm(self, pcm: torch.Tensor, what: str) -> torch.Tensor:
        return check_pcm(pcm, what).to(device=self.device, dtype=self.dtype)

    def _check_codes(self, codes: torch.Tensor, dims: int, what: str, batch_size: int | None = None) -> torch.Tensor:
        return check_codes(codes, dims, what, self.cfg.n_q, self.cardinality, batch_size).to(self.device)

    # ---- whole signal
    @torch.inference_mode()
    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        pcm = self._check_pcm(pcm, "encode")
        B, T = pcm.shape
        pad = -T % self.frame_size
        if pad:
            pcm = torch.nn.functional.pad(pcm, (0, pad))  # [B, F * frame_size]
        # Chunks carried through the streaming state give exactly the whole-signal result
        # with bounded memory for long inputs.
        state, step = self.model.init_encoder_state(B), _CHUNK_FRAMES * self.frame_size
        chunks = [self.model.encode(pcm[:, None, i:i + step], state, self.num_codebooks) for i in range(0, pcm.shape[-1], step)]
        return torch.cat(chunks, dim=-1)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes, 3, "decode")
        state = self.model.init_decoder_state(codes.shape[0])
        chunks = [self.model.decode(codes[..., i:i + _CHUNK_FRAMES], state) for i in range(0, codes.shape[-1], _CHUNK_FRAMES)]
        return torch.cat(chunks, dim=-1)[:, 0].float()

    def stream(self, batch_size: int = 1) -> "MimiStream":
        return MimiStream(self, batch_size)


class MimiStream(CodecStream):
    """Batched streaming state: encode and decode states are independent (user audio in,
    agent audio out); ``reset(rows)`` clears both for those rows only; ``encode_rows`` /
    ``decode_rows`` step those rows only."""

    def __init__(self, codec: MimiCodec, batch_size: int):
        self.codec = codec
        self.batch_size = batch_size = check_batch_size(batch_size)
        model = codec.model
        self.enc = model.init_encoder_state(batch_size)
        self.dec = model.init_decoder_state(batch_size)

    def reset(self, rows: Sequence[int] | torch.Tensor | None = None) -> None:
        mask = rows_mask(rows, self.batch_size).to(self.codec.device)
        self.enc.reset(mask)
        self.dec.reset(mask)

    @torch.inference_mode()
    def encode_frame(self, pcm: torch.Tensor) -> torch.Tensor:
        c = self.codec
        pcm = check_frame(pcm, "encode_frame", self.batch_size, c.frame_size, c.sample_rate).to(c.device, c.dtype)
        return c.model.encode(pcm[:, None], self.enc, c.num_codebooks)[:, :, 0]  # [B, K]

    @torch.inference_mode()
    def decode_frame(self, codes: torch.Tensor) -> torch.Tensor:
        c = self.codec
        codes = c._check_codes(codes, 2, "decode_frame", self.batch_size)
        return c.model.decode(codes[:, :, None], self.dec)[:, 0].float()  # [B, frame_size]

    # --- some rows only (the runtime codes the rows in use): every module's state is per row, so
    # the rows' state taken out (take_rows), stepped as a stream of that many rows and written back
    # (put_rows) codes them as the whole batch would; the other rows' state is not touched
    rows_subset = True

    @torch.inference_mode()
    def encode_rows(self, pcm: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        c = self.codec
        idx = rows_index(rows, self.batch_size)
        pcm = check_frame(pcm, "encode_rows", len(idx), c.frame_size, c.sample_rate).to(c.device, c.dtype)
        part = take_rows(self.enc, idx)
        codes = c.model.encode(pcm[:, None], part, c.num_codebooks)[:, :, 0]  # [n, K]
        put_rows(self.enc, part, idx)
        return codes

    @torch.inference_mode()
    def decode_rows(self, codes: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        c = self.codec
        idx = rows_index(rows, self.batch_size)
        codes = c._check_codes(codes, 2, "decode_rows", len(idx))
        part = take_rows(self.dec, idx)
        out = c.model.decode(codes[:, :, None], part)[:, 0].float()  # [n, frame_size]
        put_rows(self.dec, part, idx)
        return out
