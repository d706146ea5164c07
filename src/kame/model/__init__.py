"""The front-end LM (Moshi architecture + KAME oracle stream), its stepper and loaders.

    from kame.model import load_frontend, Stepper, Sampling
    model, info = load_frontend("random:tiny")            # or "hf://SakanaAI/kame", a folder
    stepper = Stepper(model, batch_size=2, sampling=info.sampling)
    out = stepper.step(user_codes)                         # [B, n_user_q] -> StepOutput

Modules: config (LMConfig, preset), modules (transformer blocks), lm (LMModel),
stepper (Stepper, OracleFeed, Sampling, StepOutput), loaders (load_frontend, save_frontend).
See docs/frontend.md.
"""

from .config import LMConfig, preset
from .lm import LMModel, LMOutput
from .loaders import Frontend, FrontendInfo, load_frontend, save_frontend
from .stepper import OracleFeed, OracleStats, Sampling, StepOutput, Stepper

__all__ = ["LMConfig", "preset", "LMModel", "LMOutput", "Frontend", "FrontendInfo", "load_frontend",
           "save_frontend", "OracleFeed", "OracleStats", "Sampling", "StepOutput", "Stepper"]
