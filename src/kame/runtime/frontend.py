"""The real FrameModel: codec encode -> front-end LM step (with the oracle feed) -> codec decode.

    factory, info = load_frame_models(config)     # loads the front-end + its codec once
    fm = factory(batch_size)                      # a Stepper + a codec stream for that many rows
    out = fm.step(pcm [B, 1920], active [B])      # FrameOut(pcm, text, oracle)

Rows that are not active (no session) are paused in the stepper (their LM state does not
advance); a codec stream that can code some rows only (``rows_subset``: the embedded codec's,
Mimi's) codes the active rows alone, the idle ones get its silence codes and zero audio (their
codec state stays as it was), while another stream (a plugin's) still runs on silence for
them; a row is reset (LM, codec, oracle feed) when a session takes it. The codec codes with
the codebooks the front-end needs (max(n_user_q, dep_q)); the decoder gets the dep_q codebooks
the model generates. The first ``max_delay`` frames of a row have no model audio yet: the
decoder gets the codec's silence codes there and the output is zeros.

``info`` names what was loaded (front-end spec, whether its weights are random, codec,
parameter count, ``oracle_stream``: "trained" (KAME's oracle_emb), "text_emb-copy" (a Moshi
checkpoint), "random" or "off", and ``sampling_*``: the values used and where each came from) -
file mode and the server report it, so a random front-end's babble is never presented as an
answer.

A checkpoint is run as it was trained: its own text tokenizer (missing: a CheckpointError, not
kame's default vocabulary), its lm_gen_config sampling (frontend.temp etc. win when set), the
codec its config.json records (kame.codec; another kind of codec: a ConfigError; another file,
told by kame.codec_sha256 and the codec's fingerprint: a CheckpointError), else a Mimi codec if it
was trained on Mimi codes (another codec: a ConfigError). Everything that can refuse a checkpoint
(codec, tokenizer, their sha256, codec/front-end fit) is decided before its weights are read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..audio import peak_problem
from ..codec.base import check_codes, check_frame, fit_codec
from ..config import KameConfig
from ..errors import AudioFormatError, CheckpointError, ConfigError, KameError
from .loading import auto_codec, check_codec, check_fingerprint, check_tokenizer, config_key, config_keys, recorded_codec
from .worker import FrameOut

log = logging.getLogger(__name__)


class CodecInterfaceError(KameError):
    """A codec's stream returned something its interface does not allow (kame.codec.base)."""


class CodecFrameModel:
    """The codec's stream output is checked every frame (a plugin codec's too): encode_frame's
    codes must be integers [B, K] in [0, cardinality) with the K >= n_user_q the front-end reads,
    decode_frame's audio a float tensor [B, frame_size], finite and within MAX_PEAK (the codecs'
    own input checks, kame.codec.base). A broken frame is replaced (silence codes for the
    front-end; silent audio for its rows) and the step raises a CodecInterfaceError naming the
    codec once per session (the engine sends every live session an ErrorEvent): the rows of the
    sessions it reached are not told again until a new session takes them (``reset``). An
    exception raised inside the codec is re-raised naming it. The front-end's logits are checked
    too: NaN or inf logits (float16 activations that overflow) would be sampled as one fixed token
    every frame. A row's NaN does not reach the other rows, so the step goes on: each active row
    that got them has a fault in FrameOut.faults, naming frontend.dtype, which the worker tells
    that session alone, once (``nonfinite_steps`` counts the steps that had any)."""

    def __init__(self, stepper, codec, *, silence_codes: torch.Tensor, text_skip: Sequence[int],
                 codec_spec: str | None = None) -> None:
        self.stepper, self.codec = stepper, codec
        self.codec_spec = codec_spec or type(codec).__name__
        self.stream = codec.stream(stepper.batch_size)
        self.batch_size = stepper.batch_size
        self.told = np.zeros(self.batch_size, bool)  # rows whose session was told the codec broke
        self.codec_faults = 0  # frames with broken codec output (repaired)
        self.nonfinite_steps = 0  # steps that gave an active row NaN/inf logits
        cfg = stepper.cfg
        self.n_user_q, self.dep_q = cfg.n_user_q, cfg.dep_q
        self.text_card = cfg.text_card
        self.pad_id = cfg.existing_text_padding_id
        self.text_skip = set(int(t) for t in text_skip)
        self.silence_codes = silence_codes  # [K] codes of a silent frame
        self.paused = np.zeros(self.batch_size, bool)
        self.oov_oracle = 0  # oracle ids outside the front-end's text vocabulary (mapped)
        self.doing: str | None = None  # the call step() is in (a stuck step's warning names it)

    def reset(self, rows: Sequence[int]) -> None:
        rows = list(rows)
        self.stepper.reset(rows)  # also resumes and clears the oracle feed
        self._codec("reset", rows)
        self.paused[rows] = False
        self.told[rows] = False  # a new session: told again if the codec breaks

    def oracle_reset(self, row: int) -> None:
        if self.stepper.model.has_oracle:  # (frontend.oracle=off: not fed, as oracle_note says)
            self.stepper.oracle.reset(row)

    def oracle_append(self, row: int, token_ids: Sequence[int]) -> None:
        from ..model.stepper import token_list

        if not self.stepper.model.has_oracle:  # (frontend.oracle=off: not fed, as oracle_note says)
            return

        ids = token_list(token_ids, f"row {row}")  # ints only (int() would round 5.9 to 5)
        if any(t >= self.text_card or t < 0 for t in ids):
            # a back-end tokenizer bigger than this front-end's vocabulary: random presets only (the
            # load refuses trained weights whose tokenizer does not fit, check_tokenizer)
            self.oov_oracle += sum(t >= self.text_card or t < 0 for t in ids)
            ids = [t % self.text_card for t in ids]
        self.stepper.oracle.append(row, ids)

    @torch.no_grad()
    def step(self, pcm: np.ndarray, active: np.ndarray) -> FrameOut:
        pause = np.flatnonzero(~active & ~self.paused).tolist()
        resume = np.flatnonzero(active & self.paused).tolist()
        if pause:
            self.stepper.pause(pause)
        if resume:
            self.stepper.resume(resume)
        self.paused = ~active
        broken: list[str] = []
        # a stream that can (rows_subset) codes the rows in use only; idle rows get the silence codes
        # (paused: the stepper ignores them) and zero audio, their codec state left until a reset
        live = torch.from_numpy(np.flatnonzero(active)) \
            if getattr(self.stream, "rows_subset", False) is True and not active.all() else None
        codes = self._encode(pcm, live, broken)  # [B, >= n_user_q]
        dev = self.stepper.model.device  # the LM may live elsewhere (frontend.device) than the codec
        self.doing = "the front-end's step"
        out = self.stepper.step(codes[:, : self.n_user_q].to(dev) if self.n_user_q else None)
        # [B] each row's index of this step: its frames so far, less this one (read after the step,
        # which applies a new session's reset first)
        steps = np.array(self.stepper.frames, np.int64) - 1
        finite = finite_rows(out)  # (one reduction; read back with valid)
        valid = out.valid.cpu()  # [B]
        audio = out.audio.cpu()  # [B, dep_q]
        # decode the dep_q codebooks the model made (coarse to fine: a prefix of the codec's K);
        # rows without model audio yet decode a silent frame's first dep_q codes
        n = min(self.silence_codes.shape[0], self.dep_q)
        if n:
            dec_in = self.silence_codes[None, :n].expand(self.batch_size, n).clone()  # [B, dep_q]
            dec_in[valid] = audio[valid, :n].to(dec_in)
            pcm_out = self._decode(dec_in, pcm.shape[-1], live, broken)  # [B, 1920]
            pcm_out = torch.where(valid[:, None], pcm_out, torch.zeros_like(pcm_out))
        else:  # no audio generated (dep_q 0: load_frame_models refuses such a front-end; a stepper given by hand)
            pcm_out = torch.zeros(self.batch_size, pcm.shape[-1])
        faults = self._check_logits(finite.cpu().numpy(), active)  # (first: counted when _broken raises)
        if broken:
            self._broken(broken, active)
        text = torch.where(valid, out.text.cpu(), torch.full_like(out.text.cpu(), -1))
        text = [(-1 if int(t) in self.text_skip else int(t)) for t in text.tolist()]
        oracle = [(-1 if int(t) == self.pad_id else int(t)) for t in out.oracle_in.tolist()]
        counts = None  # (the feed's own counts: a step that failed before this one is in them too)
        if self.stepper.model.has_oracle:
            counts = np.array([(s.fed - s.starts, s.skipped) for s in self.stepper.oracle.stats_all()], np.int64)
        return FrameOut(pcm=pcm_out.cpu().numpy(), text=np.array(text, np.int64), oracle=np.array(oracle, np.int64),
                        step=steps, faults=faults, oracle_counts=counts)

    def _encode(self, pcm: np.ndarray, live: torch.Tensor | None, broken: list[str]) -> torch.Tensor:
        """The user's codes [B, K] of every row (``live`` None), else of the ``live`` rows (the
        others get the silence codes): a broken output is said in ``broken`` and replaced by them."""
        silence = self.silence_codes[None].expand(self.batch_size, -1)
        if live is not None and not len(live):
            return silence
        what = "encode_frame returned" if live is None else "encode_rows returned"
        rows = self.batch_size if live is None else len(live)
        x = torch.from_numpy(pcm)
        codes = self._codec("encode_frame", x) if live is None else self._codec("encode_rows", x[live], live)
        try:
            codes = _check_codes(codes, self.codec, self.n_user_q, rows, what)
        except AudioFormatError as exc:  # the front-end hears a silent frame instead
            broken.append(str(exc))
            return silence
        if live is None:
            return codes
        out = silence[:, : self.n_user_q].clone()  # (the front-end reads the first n_user_q)
        out[live] = codes[:, : self.n_user_q]
        return out

    def _decode(self, dec_in: torch.Tensor, frame_size: int, live: torch.Tensor | None,
                broken: list[str]) -> torch.Tensor:
        """Audio [B, frame_size] of every row's codes (``live`` None), else of the ``live`` rows'
        (the others' is zeros): a broken output is said in ``broken`` and its rows silenced."""
        if live is None:
            rows, out = self.batch_size, self._codec("decode_frame", dec_in)
        elif not len(live):
            return torch.zeros(self.batch_size, frame_size)
        else:
            rows, out = len(live), self._codec("decode_rows", dec_in[live], live)
        what = "decode_frame returned" if live is None else "decode_rows returned"
        try:
            out = check_frame(out, what, rows, frame_size, self.codec.sample_rate).float()
        except AudioFormatError as exc:  # silence instead (only the broken rows' if it is a tensor)
            broken.append(str(exc))
            out = _silence_broken_rows(out, rows, frame_size)
        if live is None:
            return out
        full = torch.zeros(self.batch_size, frame_size, dtype=out.dtype, device=out.device)
        full[live.to(out.device)] = out
        return full

    def _check_logits(self, finite: np.ndarray, active: np.ndarray) -> dict[int, tuple[str, str]] | None:
        """FrameOut.faults of the active rows whose logits were not finite (``finite`` [B]): row ->
        ("logits", message naming frontend.dtype); None when there are none. Counted."""
        bad = active & ~finite
        if not bad.any():
            return None
        self.nonfinite_steps += 1
        dtype = str(self.stepper.model.dtype).removeprefix("torch.")
        why = ("its activations overflow float16's range (65504): run it in bfloat16 or float32 (frontend.dtype)"
               if dtype == "float16" else f"it runs in {dtype}, so this is no float16 overflow: the checkpoint's "
               f"weights or activations diverge (a broken checkpoint: check it, or load another)")
        message = (f"the front-end's logits for this session are NaN or infinite, its text and audio tokens "
                   f"meaningless: {why} (said once per session)")
        return {r: ("logits", message) for r in np.flatnonzero(bad).tolist()}

    def _codec(self, method: str, *args):
        """The codec stream's ``method``; its exception re-raised naming the codec."""
        self.doing = f"codec {self.codec_spec}'s {method}()"
        try:
            return getattr(self.stream, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a codec's own failure (a plugin's too), named
            raise KameError(f"codec {self.codec_spec} failed in {method}(): {type(exc).__name__}: {exc}") from exc

    def _broken(self, problems: list[str], active: np.ndarray) -> None:
        """A frame of broken codec output (already replaced): CodecInterfaceError for the sessions
        not told yet (the engine reports it to every live session), else counted only."""
        self.codec_faults += 1
        if not (active & ~self.told).any():
            return
        self.told |= active
        raise CodecInterfaceError(f"codec {self.codec_spec} broke its interface: {'; '.join(problems)} (its broken "
                                  "frames are replaced by silence; said once per session)")


def finite_rows(out) -> torch.Tensor:
    """[B] bool on the model's device: whether each row's text and audio logits of a Stepper's
    StepOutput are all finite, from their sum in float32 (NaN and inf carry through it): one small
    reduction a step, ~0.05 ms on a CPU core for Moshi 7B's logits at batch 4, about a tenth of an
    element-wise isfinite().all()."""
    f32 = torch.float32
    return torch.isfinite(out.text_logits.sum(-1, dtype=f32) + out.audio_logits.flatten(1).sum(-1, dtype=f32))


def _check_codes(codes, codec, n_user_q: int, batch_size: int, what: str) -> torch.Tensor:
    """A stream's encoded frame: integer codes [batch_size, K], K in [n_user_q, num_codebooks],
    in [0, cardinality) -> int64, else AudioFormatError (kame.codec.base.check_codes)."""
    codes = check_codes(codes, 2, what, max(int(codec.num_codebooks), 1), int(codec.cardinality), batch_size)
    if codes.shape[1] < n_user_q:
        raise AudioFormatError(f"{what}: got {codes.shape[1]} codebooks, the front-end reads {n_user_q} "
                               f"(num_codebooks is {codec.num_codebooks})")
    return codes


def _silence_broken_rows(pcm, batch_size: int, frame_size: int) -> torch.Tensor:
    """Decoded audio that failed check_frame -> [batch_size, frame_size] float: a float tensor of
    that shape keeps its rows whose samples are usable (audio.peak_problem), the rest is zeros."""
    if isinstance(pcm, torch.Tensor) and pcm.is_floating_point() and tuple(pcm.shape) == (batch_size, frame_size):
        pcm = pcm.detach().float()
        bad = torch.tensor([peak_problem(float(p)) is not None for p in pcm.abs().amax(1).cpu()])
        return torch.where(bad[:, None].to(pcm.device), torch.zeros_like(pcm), pcm)
    return torch.zeros(batch_size, frame_size)


def random_overrides(codec) -> dict:
    """Random presets adapt to the codec they run with (cardinality, codebooks)."""
    over: dict = {"card": int(codec.cardinality)}
    K = int(codec.num_codebooks)
    if K < 8:  # Moshi layout with K codebooks per side: semantic undelayed, acoustic delayed by 1
        over.update(n_q=2 * K, dep_q=K, delays=[0, 0] + [1] * (K - 1) + [0] + [1] * (K - 1))
    return over


def load_frontend_checked(spec: str, dtype: str, device: str, seed: int, codec_spec: str, oracle: str = "auto",
                          weights: bool = True, oracle_fix: str | None = None):
    """-> (LMModel, codec, codec spec, text tokenizer | None, info dict). The codec (a named one, or
    for "auto" the checkpoint's Mimi) is created and fitted to the front-end (fit_codec) before the
    front-end's weights load. ``oracle``: the config's frontend.oracle (auto | on | off). Its load
    errors are tagged with the config key to change (loading.config_key; load_frame_models names it).
    ``weights``: False, the front-end on the meta device with no weights read (load_frontend's).
    ``oracle_fix``: what to do about a KAME file whose config.json says "oracle": false (default:
    the frontend.oracle settings; kame train has no such option, and says its own).
    A spec of a plugin's scheme (or of a built-in one a plugin replaced: registry.plugin_scheme)
    is created through the registry with load_frontend's keyword arguments, then checked as a
    checkpoint is (random weights, its info.weights None, as a random preset: the embedded codec
    for codec.spec auto, fitted after)."""
    from .. import registry
    from ..model.config import random_config
    from ..model.expected import check_expected
    from ..model.loaders import load_frontend, parse_device

    with config_key("frontend.device"):
        parse_device(device)  # (was: said by the loader, as if the checkpoint's fault)
    with config_key("frontend.spec"):  # both specs' form, at once (the front-end's once per load)
        form = frontend_form(spec)
    kind = form[0]
    plugin = kind == "plugin"
    if codec_spec != "auto":
        with config_key("codec.spec"):
            registry.check_spec("codec", codec_spec)
    # "off" loads a checkpoint with its oracle stream (a KAME file's oracle_emb must find its place)
    # and removes it below; a random preset is built without one
    want = {"auto": None, "on": True, "off": True if kind != "random" else False}[oracle]
    if kind == "random":  # random weights: the embedded CPU codec unless told otherwise
        with config_key("frontend.spec"):  # a preset of Kyutai STT's shape: no audio out (before the codec,
            check_expected("frontend", random_config(form[1]), spec)  # whose codebooks could reshape it below)
        codec_spec = "embedded" if codec_spec == "auto" else codec_spec
        with config_key("codec.spec"):
            codec = registry.create("codec", codec_spec)
        with config_key("frontend.spec"):
            model, finfo = load_frontend(spec, device=device, dtype=dtype, seed=max(seed, 0), spec_form=form,
                                         oracle=want, expect="frontend", weights=weights, **random_overrides(codec))
        with config_key("codec.spec"):
            fit_codec(codec, codec_spec, model.cfg, spec)
    else:
        with config_key("codec.spec"):
            named = registry.create("codec", codec_spec) if codec_spec != "auto" else None
        chosen: dict = {}

        def check(finfo) -> None:  # before the weights load: a 7B checkpoint is refused in seconds
            chosen["checked"] = True
            # where its companion files were looked for: a plugin's factory says by what it loaded
            where = _loaded_form(finfo) if plugin else form  # (was: none, and _where failed on it)
            with config_key("codec.spec"):
                check_codec(finfo, spec, named, codec_spec)
            with config_key("frontend.spec"):
                check_tokenizer(finfo, spec, where)
            with config_key("codec.spec"):  # the codec it runs with, and whether it fits
                _choose_codec(finfo, where)

        def _choose_codec(finfo, form) -> None:
            codec, cspec, fix = named, codec_spec, None
            if codec is None and finfo.kame.get("codec"):  # "auto": the codec it was trained with
                recorded = finfo.kame["codec"]  # (a relative path: the checkpoint folder's first)
                codec, cspec = recorded_codec(recorded, spec, form, finfo)
                fix = (f"its config.json and the codec it records (kame.codec {recorded!r}) do not belong together: "
                       f"check kame.codec, or set codec.spec")
            elif codec is None:  # "auto": the checkpoint's own Mimi
                cspec = f"mimi:{finfo.mimi.absolute()}" if finfo.mimi is not None else "mimi"
                codec = auto_codec(cspec, spec, form, finfo)
                fix = ("its config.json and the Mimi file it names (mimi_name) do not belong together: check "
                       "mimi_name, or set codec.spec=mimi:PATH")
            if getattr(finfo, "assumed", ""):  # the loader's word (was: blamed a mimi_name it has not; then also
                # said of a plugin's front-end, whose FrontendInfo has no raw_config)
                fix = (f"{spec} has no config.json (none found, or none in the local cache), so Moshi 7B's config "
                       f"was assumed, as the moshi package does: if its weights are not Moshi 7B's, load a folder "
                       f"or repo with the config.json they were saved with; if they are, this codec is not their "
                       f"Mimi (set codec.spec=mimi:PATH)")
            check_fingerprint(codec, cspec, finfo, spec)
            fit_codec(codec, cspec, finfo.config, spec, fix)
            chosen.update(codec=codec, spec=cspec)

        try:
            with config_key("frontend.spec"):
                if not plugin:
                    model, finfo = load_frontend(spec, device=device, dtype=dtype, seed=max(seed, 0), spec_form=form,
                                                 oracle=want, expect="frontend", before_weights=check,
                                                 weights=weights)
                else:  # the same keyword arguments, through the registry; the same checks after
                    model, finfo = plugin_frontend(spec, device=device, dtype=dtype, seed=max(seed, 0), oracle=want,
                                                    expect="frontend", before_weights=check, weights=weights)
                    check_expected("frontend", model.cfg, spec)  # (a factory may not have passed expect on)
            if plugin and finfo.weights is None and "checked" not in chosen:  # random weights:
                with config_key("codec.spec"):  # as a random preset's, the embedded codec unless told otherwise
                    cspec = "embedded" if codec_spec == "auto" else codec_spec
                    codec = named or registry.create("codec", cspec)
                    fit_codec(codec, cspec, model.cfg, spec)
                    chosen.update(codec=codec, spec=cspec)
            elif "checked" not in chosen:  # a plugin's factory that did not call before_weights
                check(finfo)
        except CheckpointError as exc:
            if want is not None or not exc.needs_oracle:
                raise
            # an oracle_emb the config does not define: a KAME file whose config.json says "oracle":
            # false (the loader's hint names load_frontend's argument; here it is a config key). Told
            # by the loader (was: "oracle_emb" in the message, also in a kame_finetune training
            # folder's refusal, "--oracle_embedding_mode", whose fix is no frontend.oracle)
            fix = oracle_fix or ("in kame's config: frontend.oracle=on (run it with its oracle stream) or "
                                 "frontend.oracle=off (run it as plain Moshi)")
            from ..model.loaders import ORACLE_HINT

            said = str(exc).removesuffix(ORACLE_HINT)  # (load_frontend's argument: here its config key is said)
            with config_key("frontend.oracle"):
                raise CheckpointError(f"front-end {spec!r}: {said}; {fix}") from exc
        codec, codec_spec = chosen["codec"], chosen["spec"]
    stream = oracle_stream(model, finfo, kind)
    if oracle == "off" and model.has_oracle:  # run it as plain Moshi: the stepper feeds no oracle
        from ..model.lm import without_oracle

        model = without_oracle(model)  # (one way for kame run and kame bench step's "no oracle" column)
        stream = "off"
        log.info("front-end %s: frontend.oracle=off: its oracle stream removed (run as plain Moshi)", spec)
    tokenizer = None
    if finfo.tokenizer is not None:
        from ..backend.tokenizer import TextTokenizer

        tokenizer = TextTokenizer(finfo.tokenizer)  # (checked by check_tokenizer before the weights)
    info = {"frontend_random": finfo.weights is None, "frontend_type": finfo.model_type,
            "frontend_weights": str(finfo.weights) if finfo.weights else None,
            "tokenizer": _tokenizer_name(finfo.tokenizer),
            "oracle_stream": stream,  # below: for load_frame_models (taken out there)
            "lm_gen_config": dict(finfo.lm_gen_config), "checkpoint_sampling": finfo.sampling}
    return model, codec, codec_spec, tokenizer, info


def _tokenizer_name(path) -> str:
    """The run record's name of the front-end's tokenizer file: "default (kame/assets)" for kame's
    shipped one (none, or the file a kame front-end saved with tokenizer "default" resolves to), else
    its path (was: the shipped file's absolute path, which kame.train.recorded.from_kame_run took for
    another tokenizer)."""
    from ..backend.tokenizer import is_default_model

    return "default (kame/assets)" if path is None or is_default_model(path) else str(path)


def frontend_form(spec: str) -> tuple:
    """check_frontend_spec's form of ``spec`` (ConfigError for one that is none), or ("plugin",
    None, None) for a spec of a plugin's scheme (or of a built-in one a plugin replaced:
    registry.plugin_scheme), whose factory reads the rest (plugin_frontend). Every command that
    takes a front-end spec asks this first (was: plugins' front-ends refused, or a replaced
    built-in read as kame's own)."""
    from .. import registry
    from ..model.loaders import check_frontend_spec

    return ("plugin", None, None) if registry.plugin_scheme("frontend", spec) else check_frontend_spec(spec)


def plugin_frontend(spec: str, **kwargs):
    """A front-end of a plugin's scheme (or of a built-in one it replaced: registry.plugin_scheme):
    its factory called as the built-in ones are, factory(arg, **load_frontend's keyword arguments)
    (those its signature does not take are left out) -> (model, FrontendInfo) of the Frontend it
    returns, else ConfigError. (load_frontend_checked's, and kame bench step's.)"""
    from .. import registry
    from ..model.config import LMConfig
    from ..model.loaders import Frontend, FrontendInfo

    made = registry.create_with_optional("frontend", spec, **kwargs)
    model, finfo = (made.model, made.info) if isinstance(made, Frontend) else \
        made if isinstance(made, tuple) and len(made) == 2 else (None, None)
    if not (isinstance(finfo, FrontendInfo) and isinstance(getattr(model, "cfg", None), LMConfig)
            and isinstance(model, torch.nn.Module)):
        raise ConfigError(f"frontend {spec!r}: its factory returned {type(made).__name__}, not a front-end: return "
                          f"kame.model.loaders.Frontend(model, info), e.g. Frontend(*load_frontend(...)) (an LMModel "
                          f"and its FrontendInfo)")
    return model, finfo


def _loaded_form(finfo):
    """The form (check_frontend_spec's) of what a plugin's factory loaded, for where its companion
    files were looked for: its FrontendInfo's source when that is a front-end spec (a checkpoint
    folder or file, hf://...), else the folder of its weights, else none (("plugin", None, None):
    the errors name the file alone)."""
    from ..model.loaders import check_frontend_spec

    try:
        return check_frontend_spec(finfo.source)
    except (KameError, TypeError, ValueError):  # (e.g. a source that is no spec, or a folder gone since)
        pass
    if finfo.weights is not None:
        return "path", None, Path(finfo.weights).parent
    return "plugin", None, None


def oracle_stream(model, finfo, kind: str) -> str:
    """What the front-end's oracle input is: "trained" (the checkpoint's oracle_emb, KAME),
    "text_emb-copy" (a checkpoint without one, e.g. Moshi: cloned from text_emb on load),
    "random" (random weights) or "off"."""
    if not model.has_oracle:
        return "off"
    if kind == "random" or finfo.weights is None:  # (a plugin's front-end of random weights too)
        return "random"
    return "text_emb-copy" if finfo.oracle_upgraded else "trained"


def load_frame_models(cfg: KameConfig):
    """Load the front-end and its codec; return (factory(batch_size) -> FrameModel, info)."""
    from ..model.stepper import Stepper

    fc = cfg.frontend
    with config_keys(cfg):  # a load error names the config key to change, and the file that set it
        model, codec, codec_spec, tokenizer, linfo = load_frontend_checked(fc.spec, fc.dtype, fc.device, fc.seed,
                                                                    cfg.codec.spec, fc.oracle)
    model.eval()
    c = model.cfg
    if tokenizer is None:
        from ..backend.tokenizer import default_tokenizer

        tokenizer = default_tokenizer()
    with torch.no_grad():
        s = codec.stream(1)
        try:
            silence_codes = _check_codes(s.encode_frame(torch.zeros(1, 1920)), codec, c.n_user_q, 1,
                                         "encode_frame of a silent frame returned")[0]  # [K]
        except AudioFormatError as exc:
            raise CodecInterfaceError(f"codec {codec_spec} broke its interface: {exc}") from None
    sampling, sampling_info = resolve_sampling(fc, linfo.pop("checkpoint_sampling"), linfo.pop("lm_gen_config"))
    text_skip = {c.existing_text_padding_id, c.existing_text_end_padding_id, c.text_card}

    def factory(batch_size: int) -> CodecFrameModel:
        # frontend.seed: per-row random streams, each session's seeded afresh when it joins (its
        # samples depend on the seed and its own input, not on runtime.max_sessions / batched, its
        # row or the other sessions); -1: torch's global generator, nondeterministic
        stepper = Stepper(model, batch_size=batch_size, sampling=sampling, seed=fc.seed if fc.seed >= 0 else None)
        return CodecFrameModel(stepper, codec, silence_codes=silence_codes, text_skip=text_skip,
                               codec_spec=codec_spec)

    def token_text(tok: int) -> str:
        return tokenizer.piece_text(tok)

    random_weights = bool(linfo["frontend_random"])
    info = {
        "frontend": fc.spec,
        "frontend_random": random_weights,
        "frontend_params": int(sum(p.numel() for p in model.parameters())),
        "codec": codec_spec,
        "text_vocab": c.text_card,
        "oracle": bool(getattr(model, "has_oracle", False)),  # oracle_stream says what it is
        **sampling_info,
        "oracle_start_id": c.text_card,
        "text_pad_id": int(c.existing_text_padding_id),
        # output frame f comes out of step f + max_delay (the acoustic delays per stream)
        "max_delay": int(c.max_delay), "delays": [int(d) for d in c.delays],
        # kame's default tokenizer, bigger than a small random preset's text vocabulary: oracle ids
        # are folded into it (CodecFrameModel.oracle_append); a checkpoint's tokenizer must fit
        # (check_tokenizer refuses it before the weights load)
        "oracle_ids_folded": tokenizer.vocab_size > c.text_card,
        "token_text": token_text,
        "text_tokenizer": tokenizer,
        **{k: v for k, v in linfo.items() if k != "frontend_random"},
    }
    if random_weights:
        info["frontend_note"] = ("RANDOM-WEIGHT front-end: its speech and inner monologue are babble, "
                                 "not answers; the pipeline and timing are real")
    stream = linfo["oracle_stream"]
    if stream == "text_emb-copy":
        info["oracle_note"] = ("the checkpoint has no trained oracle_emb (a Moshi checkpoint): its oracle stream is "
                               "a copy of text_emb, as KAME initialises it; frontend.oracle=off runs it as plain Moshi")
        log.warning("front-end %s: %s", fc.spec, info["oracle_note"])
    elif stream == "off" and cfg.backend.llm != "none":
        why = "frontend.oracle is off" if fc.oracle == "off" else "the front-end has no oracle stream (its config)"
        info["oracle_note"] = f"{why}: the back-end's predictions (backend.llm={cfg.backend.llm}) are not fed to it"
        log.warning("%s", info["oracle_note"])
    return factory, info


SAMPLING_KEYS = ("temp", "top_k", "temp_text", "top_k_text")


def resolve_sampling(fc, checkpoint, lm_gen_config: dict):
    """The front-end's Sampling: per key the config's value if set (frontend.temp, ...), else the
    checkpoint's (``checkpoint``: the loader's Sampling of its config.json lm_gen_config, which
    names the keys it sets; ``use_sampling: false`` = greedy, i.e. temperatures 0), else kame's
    default (KAME/Moshi's) -> (Sampling, what kame run and the server report as used: flat
    JSON scalars {"sampling_temp": 0.8, ..., "sampling_greedy": False, "sampling_source":
    "temp=checkpoint top_k=default temp_text=config top_k_text=checkpoint"})."""
    from ..model.stepper import Sampling

    default, values, source = Sampling(), {}, {}
    for key in SAMPLING_KEYS:
        temp = key.startswith("temp")
        if getattr(fc, key) is not None:
            values[key], source[key] = getattr(fc, key), "config"
        elif temp and checkpoint.greedy:
            values[key], source[key] = 0.0, "checkpoint"
        elif key in lm_gen_config:
            values[key], source[key] = getattr(checkpoint, key), "checkpoint"
        else:
            values[key], source[key] = getattr(default, key), "default"
        values[key] = float(values[key]) if temp else int(values[key])
    greedy = values["temp"] <= 0 and values["temp_text"] <= 0
    used = {f"sampling_{k}": v for k, v in values.items()}
    used.update(sampling_greedy=greedy, sampling_source=" ".join(f"{k}={v}" for k, v in source.items()))
    return Sampling(**values, greedy=greedy), used
