"""Whether a front-end checkpoint is the kind its caller expects (load_frontend's ``expect``,
checked before its weights load): a speech-to-speech front-end that reads the user's audio, or a
Kyutai STT LM, and one that can be stepped frame by frame (a finite context). Its errors say what
the checkpoint is instead, and for a random: spec the keys to change.
"""

from __future__ import annotations

from ..config import frontend_spec_form
from ..errors import CheckpointError, ConfigError
from .config import LMConfig, preset, random_spec_options
from .modules import NEEDS_CONTEXT


def check_streamable(cfg: LMConfig, spec: str) -> None:
    """ConfigError unless a model of this config can be stepped frame by frame (a finite context):
    checked before the weights (the stepper would refuse it after them)."""
    if cfg.context is None:
        raise ConfigError(f"{spec}: its {NEEDS_CONTEXT}")


def _random_spec(spec: str) -> tuple | None:
    """A random: spec's (preset, keys it sets), for check_expected's hints; None for a checkpoint
    (no spec to change)."""
    try:
        kind, name, _ = frontend_spec_form(spec)
        return random_spec_options(name) if kind == "random" else None
    except ConfigError:
        return None


def check_expected(expect: str | None, cfg: LMConfig, spec: str) -> None:
    """load_frontend's ``expect``: a speech-to-speech front-end ("frontend") or a Kyutai STT LM
    ("stt"), told apart by dep_q (the audio codebooks it generates; 0 for Kyutai STT); a
    "frontend" must also read the user's audio (n_q above dep_q: else it talks whatever is said)."""
    if expect is None:
        return
    if expect not in ("frontend", "stt"):
        raise ConfigError(f"expect={expect!r}: use 'frontend', 'stt' or None")
    check_streamable(cfg, spec)  # both are stepped frame by frame
    if expect == "frontend" and cfg.dep_q == 0:
        if (random := _random_spec(spec)) is not None:
            head, keys = random
            fix = (f"leave dep_q out of the spec (random:{head}'s is {preset(head).dep_q})"
                   if "dep_q" in keys and preset(head).dep_q else "use random:tiny, random:small or random:100m")
            raise CheckpointError(f"{spec} is shaped like Kyutai STT (dep_q 0: text out, no audio), not a "
                                  f"speech-to-speech front-end; {fix}")
        mt = cfg.meta.get("model_type", "moshi")
        raise CheckpointError(f"{spec} is a Kyutai STT checkpoint (model_type {mt!r}, dep_q 0: it writes text and "
                              f"no audio), not a speech-to-speech front-end; use it as the speech-to-text back-end: "
                              f"backend.stt=kyutai:{spec}, and a Moshi/KAME checkpoint as frontend.spec")
    if expect == "frontend" and cfg.n_user_q == 0:  # (was: ran, deaf: its agent talked over anything)
        fix = ""
        if (random := _random_spec(spec)) is not None:  # the keys of the spec that made it so
            given = [k for k in ("n_q", "dep_q", "delays") if k in random[1]]
            leave = f" leave {' and '.join(given)} out of the spec, or" if given else ""
            fix = f";{leave} give n_q={2 * cfg.dep_q} with n_q + 1 delays"
        raise CheckpointError(f"{spec} reads no user audio (n_q {cfg.n_q} = dep_q {cfg.dep_q}: every audio codebook "
                              f"it reads is one it generates), so a tandem agent on it would talk whatever the user "
                              f"says; a speech-to-speech front-end has n_q = dep_q + the user's codebooks (Moshi's "
                              f"layout: n_q {2 * cfg.dep_q} for dep_q {cfg.dep_q}){fix}")
    if expect == "stt" and cfg.dep_q != 0:
        raise CheckpointError(f"{spec} is a speech-to-speech front-end checkpoint (dep_q {cfg.dep_q}), not a Kyutai "
                              f"STT; use it as frontend.spec={spec}")
