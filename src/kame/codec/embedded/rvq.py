"""PCA projection + residual vector quantizer (k-means per stage) for the embedded codec.

A token frame's 8 sub-frame feature vectors are stacked ([8 * (n_cep + 2)]), centred, weighted
per dimension, projected to ``pca_dim`` with PCA, then quantized by ``num_codebooks`` stages of
k-means, each on the residual of the previous ones (coarse to fine: decoding with only the first
k codebooks degrades gracefully).

    q = fit_rvq(x, cfg, seed)           # x [N, D] stacked features
    codes = q.encode(x)                 # [N, K] int64, greedy: nearest entry stage by stage
    codes = q.encode(x, beam=16)        # beam search over the stages (what the codec uses)
    x_hat = q.decode(codes)             # [N, D]; codes may hold fewer than K columns
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ...seeding import seed_generator
from .config import EmbeddedCodecConfig

log = logging.getLogger(__name__)


@dataclass
class RVQ:
    mean: torch.Tensor  # [D]
    scale: torch.Tensor  # [D] per-dimension weight applied before the projection
    proj: torch.Tensor  # [D, P] orthonormal PCA basis
    codebooks: torch.Tensor  # [K, card, P]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) * self.scale) @ self.proj

    def unproject(self, z: torch.Tensor) -> torch.Tensor:
        # a broadcast product + sum instead of a matmul: a BLAS matmul picks its kernel (and so
        # its rounding) by the number of rows, and the decoder must give a row the same bits
        # whatever the batch size (the vocoder's high harmonics amplify last-bit differences)
        return (z[:, :, None] * self.proj.T).sum(1) / self.scale + self.mean

    def encode(self, x: torch.Tensor, num_codebooks: int | None = None, beam: int = 1) -> torch.Tensor:
        """x [N, D] -> codes [N, K]. ``beam`` > 1 keeps that many best partial code sequences
        from stage to stage instead of the greedy nearest entry (lower error, more compute)."""
        k = num_codebooks or self.codebooks.shape[0]
        books, norms = self.codebooks[:k], self.norms()[:k]
        r = self.project(x)  # beam 1: the nearest entry stage by stage
        return torch.cat([_beam_encode(r[s : s + 2048], books, max(1, beam), norms)
                          for s in range(0, len(r), 2048)])

    def norms(self) -> list[torch.Tensor]:
        """|c|^2 of each codebook's entries ([card] per stage): computed once for the codebooks
        tensor (again when it is replaced or changed in place: keyed on it and its version)."""
        cb = self.codebooks
        key = (cb, _version(cb))
        cached = self.__dict__.get("_norms")
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1] or key[1] is None:
            cached = self.__dict__["_norms"] = (key, [c.square().sum(1) for c in cb])
        return cached[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [N, k] (k <= K) -> x [N, D]."""
        z = torch.zeros(codes.shape[0], self.proj.shape[1])
        for i in range(codes.shape[1]):
            z = z + self.codebooks[i][codes[:, i]]
        return self.unproject(z)


def _version(t: torch.Tensor) -> int | None:
    """A tensor's in-place change counter (None for an inference tensor, which keeps none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _beam_encode(r: torch.Tensor, books: torch.Tensor, beam: int, norms: list[torch.Tensor]) -> torch.Tensor:
    """Beam search over the residual stages: r [N, P] -> codes [N, K] of the best sequence.
    ``norms``: |c|^2 of each book's entries (RVQ.norms)."""
    n, p = r.shape
    card = books.shape[1]
    res, hist = r[:, None], torch.zeros(n, 1, 0, dtype=torch.long)  # [N, w, P], [N, w, stage]
    for i, cb in enumerate(books):
        # |res - c|^2 for every kept candidate and entry: [N, w, card]
        d = res.square().sum(-1, keepdim=True) - 2.0 * res @ cb.T + norms[i]
        top = d.reshape(n, -1).topk(min(beam, d.shape[1] * card), largest=False).indices
        src, idx = top // card, top % card
        res = torch.gather(res, 1, src[..., None].expand(-1, -1, p)) - cb[idx]
        hist = torch.cat([torch.gather(hist, 1, src[..., None].expand(-1, -1, hist.shape[2])), idx[..., None]], -1)
    return hist[:, 0]


def _nearest(x: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of x ([N, P], [C, P] -> [N])."""
    out = torch.empty(x.shape[0], dtype=torch.long)
    c2 = cb.square().sum(1)
    for s in range(0, x.shape[0], 8192):
        xs = x[s : s + 8192]
        out[s : s + 8192] = torch.addmm(c2, xs, cb.T, alpha=-2.0).argmin(1)  # |c|^2 - 2 x.c
    return out


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator, max_points: int = 0) -> torch.Tensor:
    """Plain Lloyd k-means from random data points; empty clusters are re-seeded from the
    points farthest from their centroid. x [N, P] -> centroids [k, P]. With ``max_points``
    the iterations run on a random subset of that many points (the cost is linear in N)."""
    n = x.shape[0]
    if 0 < max_points < n:
        x, n = x[torch.randperm(n, generator=gen)[:max_points]], max_points
    if n < k:  # tiny fits (tests): repeat points with a small jitter
        reps = -(-k // n)
        x = x.repeat(reps, 1) + 1e-3 * torch.randn(n * reps, x.shape[1], generator=gen)
        n = x.shape[0]
    cent = x[torch.randperm(n, generator=gen)[:k]].clone()
    for _ in range(iters):
        idx = _nearest(x, cent)
        sums = torch.zeros_like(cent).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        filled = counts > 0
        cent[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            err = (x - cent[idx]).square().sum(1)
            far = torch.argsort(err, descending=True)[: int((~filled).sum())]
            cent[~filled] = x[far]
    return cent


def fit_rvq(x: torch.Tensor, cfg: EmbeddedCodecConfig, seed: int = 0) -> RVQ:
    """Fit the weighted PCA and the residual codebooks on stacked features x [N, D]."""
    gen = seed_generator(torch.Generator(), seed)
    F = cfg.feat_dim
    w = torch.ones(F)
    w[cfg.n_cep] = cfg.w_f0
    w[cfg.n_cep + 1] = cfg.w_voicing
    scale = w.repeat(cfg.subframes)  # [D]
    mean = x.mean(0)
    xc = (x - mean) * scale
    cov = (xc.T.double() @ xc.double()) / max(1, xc.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[: cfg.pca_dim]
    proj = evecs[:, order].float()
    # fix the sign of each basis vector so refits are identical bit for bit
    proj = proj * torch.sign(proj[proj.abs().argmax(0), torch.arange(proj.shape[1])])[None]
    kept = float(evals[order].sum() / evals.sum())
    log.info("PCA %d -> %d dims keeps %.4f of the weighted variance", x.shape[1], cfg.pca_dim, kept)
    r = xc @ proj
    books = []
    for stage in range(cfg.num_codebooks):
        cb = kmeans(r, cfg.cardinality, cfg.kmeans_iters, gen, cfg.kmeans_points)
        r = r - cb[_nearest(r, cb)]
        books.append(cb)
        log.info("RVQ stage %d: residual mse %.4f", stage, float(r.square().mean()))
    return RVQ(mean=mean, scale=scale, proj=proj, codebooks=torch.stack(books))
