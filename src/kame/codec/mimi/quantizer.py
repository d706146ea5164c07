"""Mimi's split residual vector quantizer (inference only).

Two residual VQs read the same latent x [B, dimension, F]: ``rvq_first`` (n_q_semantic
codebooks, the semantic token) and ``rvq_rest`` (the acoustic codebooks). Each has its own
1x1-conv input projection to ``codebook_dim`` and output projection back; their decoded outputs
are summed. A codebook is stored as EMA statistics (``embedding_sum`` [bins, dim] and
``cluster_usage`` [bins]); the centroids are ``embedding_sum / max(cluster_usage, 1e-5)``.
Parameter/buffer names reproduce the checkpoint's keys, e.g.
``quantizer.rvq_rest.vq.layers.3._codebook.embedding_sum``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MimiConfig

_EPS = 1e-5


class Codebook(nn.Module):
    def __init__(self, dim: int, bins: int):
        super().__init__()
        self.register_buffer("_initialized", torch.ones(1))
        self.register_buffer("cluster_usage", torch.ones(bins))
        self.register_buffer("embedding_sum", torch.zeros(bins, dim))
        self._cache: tuple | None = None

    @property
    def embedding(self) -> torch.Tensor:
        """Centroids [bins, dim], recomputed only when the stored statistics change."""
        key = (self.embedding_sum.data_ptr(), self.embedding_sum._version, self.cluster_usage.data_ptr(),
               self.cluster_usage._version, self.embedding_sum.dtype)
        if self._cache is None or self._cache[0] != key:
            emb = self.embedding_sum / self.cluster_usage.clamp(min=_EPS)[:, None]
            # [e, 1, |e|^2] so that [-2x, |x|^2, 1] @ it.T = |x - e|^2 in one matmul, the same
            # arithmetic as torch.cdist's matmul path (so codes agree with the reference)
            aug = torch.cat([emb, torch.ones_like(emb[:, :1]), emb.pow(2).sum(-1, keepdim=True)], dim=-1)
            self._cache = (key, emb, aug.t().contiguous())
        return self._cache[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # x [N, dim] -> codes [N], index of the nearest centroid (euclidean)
        self.embedding  # refresh the cache
        aug_t = self._cache[2]  # [dim + 2, bins]
        x_aug = torch.cat([x.mul(-2), x.pow(2).sum(-1, keepdim=True), torch.ones_like(x[:, :1])], dim=-1)
        return (x_aug[None] @ aug_t[None])[0].clamp_min(0).argmin(dim=-1)  # [N]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embedding)


class _VQLayer(nn.Module):
    def __init__(self, dim: int, bins: int):
        super().__init__()
        self._codebook = Codebook(dim, bins)


class _Layers(nn.Module):
    def __init__(self, n: int, dim: int, bins: int):
        super().__init__()
        self.layers = nn.ModuleList([_VQLayer(dim, bins) for _ in range(n)])


class ResidualVQ(nn.Module):
    def __init__(self, n_q: int, cfg: MimiConfig):
        super().__init__()
        self.input_proj = nn.Conv1d(cfg.dimension, cfg.codebook_dim, 1, bias=False)
        self.output_proj = nn.Conv1d(cfg.codebook_dim, cfg.dimension, 1, bias=False)
        self.vq = _Layers(n_q, cfg.codebook_dim, cfg.bins)

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        # x [B, dimension, F] -> codes [B, n_q, F]
        B, _, Fr = x.shape
        residual = self.input_proj(x).transpose(1, 2).reshape(B * Fr, -1)  # [B*F, codebook_dim]
        codes = []
        for layer in self.vq.layers[:n_q]:
            cb = layer._codebook
            c = cb.encode(residual)
            residual = residual - cb.decode(c)
            codes.append(c.view(B, Fr))
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [B, K, F] -> [B, dimension, F]
        q = 0
        for i in range(codes.shape[1]):
            q = q + self.vq.layers[i]._codebook.decode(codes[:, i])  # [B, F, codebook_dim]
        return self.output_proj(q.transpose(1, 2))


class SplitResidualVQ(nn.Module):
    def __init__(self, cfg: MimiConfig):
        super().__init__()
        self.n_q_semantic = cfg.n_q_semantic
        self.rvq_first = ResidualVQ(cfg.n_q_semantic, cfg)
        self.rvq_rest = ResidualVQ(cfg.n_q - cfg.n_q_semantic, cfg)

    def encode(self, x: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        # x [B, dimension, F] -> codes [B, num_codebooks, F] int64
        codes = self.rvq_first.encode(x, self.n_q_semantic)
        if num_codebooks > self.n_q_semantic:
            codes = torch.cat([codes, self.rvq_rest.encode(x, num_codebooks - self.n_q_semantic)], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [B, K, F] -> latent [B, dimension, F]
        out = self.rvq_first.decode(codes[:, : self.n_q_semantic])
        if codes.shape[1] > self.n_q_semantic:
            out = out + self.rvq_rest.decode(codes[:, self.n_q_semantic:])
        return out
