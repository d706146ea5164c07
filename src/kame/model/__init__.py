"""The front-end LM (Moshi architecture + KAME oracle stream), its stepper and loaders.

    from kame.model import load_frontend, Stepper, Sampling
    model, info = load_frontend("random:tiny")            # or "hf://SakanaAI/kame", a folder
    stepper = Stepper(model, batch_size=2, sampling=info.sampling)
    out = stepper.step(user_codes)                         # [B, n_user_q] -> StepOutput

Modules: config (LMConfig, preset), modules (transformer blocks), lm (LMModel),
stepper (Stepper, OracleFeed, Sampling, StepOutput), loaders (load_frontend, save_frontend).
See docs/frontend.md.
"""

# Imported on first use (PEP 562), so that the torch-free kame.model.config (preset names, config
# checks) can be imported without torch, e.g. by kame.config at config load.
_EXPORTS = {"LMConfig": "config", "preset": "config", "LMModel": "lm", "LMOutput": "lm",
            "Frontend": "loaders", "FrontendInfo": "loaders", "load_frontend": "loaders",
            "save_frontend": "loaders", "OracleFeed": "stepper", "OracleStats": "stepper", "oracle_ids": "stepper",
            "oracle_timeline": "stepper",
            "Sampling": "stepper", "StepOutput": "stepper", "Stepper": "stepper"}
__all__ = list(_EXPORTS)


_SUBMODULES = ("config", "modules", "lm", "stepper", "loaders")


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:  # kame.model.lm etc. without importing them first, as before
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
