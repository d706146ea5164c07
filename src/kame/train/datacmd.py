"""What `kame data synth` and `kame data oracle` share: the set's settings record (OUT/synth.json),
the simulator (--llm, --interval, --delay: made, tried with one short request, closed), the
tokenizer of --tokenizer, what draws an item's voice and layout, and the lines of their reports
(predictions per hint level, points past a dialogue's end, failures). `kame data encode` takes
its --tokenizer here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from pathlib import Path

from ..cliargs import counted, naming
from .data import DataError

log = logging.getLogger(__name__)

SETTINGS = "synth.json"  # the run's settings, beside the manifest
MAX_FAILURES_IN_A_ROW = 5  # failures in a row that stop a run (a server gone down fails every item after it)


def item_index(item, position: int) -> int:
    """What draws an item's voice and layout: its record's index in its file (kame.train.qa puts
    it in ``source``, and a synthesized Dialogue's ``source`` keeps it), else its position in the
    list given."""
    index = item.source.get("index") if isinstance(item.source, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else position


def record_settings(out: Path, settings: dict) -> None:
    """OUT/synth.json says ``settings``: kame data synth calls it once a dialogue was written with
    them, kame data oracle once one got its new oracle (was, in synth: also by a run that wrote
    none, so synth.json stopped describing the set and a rerun with its true settings was warned
    of mixed ones)."""
    import json

    from ..paths import write_replacing

    write_replacing(out / SETTINGS, lambda tmp: tmp.write_text(json.dumps(settings, indent=1) + "\n"),
                    "settings record", error=DataError)


def read_record(out: Path, then: str) -> dict | None:
    """OUT/synth.json's settings (record_settings'), None when there is none; a DataError when it
    is not a JSON object (cut by a stopped write?), naming it and what to do (``then``: after
    "remove it or fix it,"): kame data synth's resume, kame data oracle and kame train's note of a
    set cleaned otherwise (kame.train.oracle_sim.stale_cleaning) read it so (was: three rules; a
    synth resume read a damaged record as none and wrote its own over it, the new cleaning version
    over dialogues it skipped, and kame train said nothing)."""
    import json

    path = Path(out) / SETTINGS
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        doc, why = None, f"not readable JSON ({exc})"
    else:
        why = f"a JSON {type(doc).__name__}, not an object"
    if not isinstance(doc, dict):
        raise DataError(f"{path}: {why}: `kame data synth`'s record of the set is damaged (cut short by a stopped "
                        f"write?); remove it (the set's dialogues do not need it; `kame data synth` writes it again) "
                        f"or fix it, {then}")
    return doc


def recorded_tokenizer(path: str | None) -> str | None:
    """--tokenizer as synth.json records it: resolved, so kame train's note names it in a command
    run from anywhere (None: kame's default). kame data synth and kame data oracle record it; a
    record made before it was resolved is compared so (was: warned as another tokenizer)."""
    return str(Path(path).resolve()) if path else None


def oracle_rng(seed: int, index: int):
    """The generator of an item's oracle (--llm random's predictions, the embedded LLM's per-point
    seeds), from --seed and the item's index (item_index): kame data oracle --seed S draws what
    kame data synth --seed S drew, for any slice of the set."""
    import numpy as np

    return np.random.default_rng([seed, index, 2])


def tokenizer_of(path: str | None):
    """The tokenizer of --tokenizer PATH, its errors naming --tokenizer (was: "SentencePiece model
    not found: PATH" alone), else kame's default (kame data oracle's, data synth's and data encode's)."""
    from ..backend.tokenizer import TextTokenizer, default_tokenizer

    if not path:
        return default_tokenizer()
    with naming("--tokenizer"):
        return TextTokenizer(path)


def oracle_config(args):
    """The SimOracleConfig of --interval and --delay (argparse checked them: cliargs' types)."""
    from dataclasses import replace

    from .oracle_sim import SimOracleConfig

    oracle_cfg = SimOracleConfig()
    if args.interval is not None:
        oracle_cfg = replace(oracle_cfg, interval_s=args.interval)
    if args.delay is not None:
        oracle_cfg = replace(oracle_cfg, delay_s=args.delay)
    return oracle_cfg


def check_simulator(spec: str) -> None:
    """ConfigError naming --llm unless SPEC is 'none', 'random' or an LLM spec of a known scheme
    (nothing loaded: kame data synth checks it before making its output folder)."""
    from .. import registry

    if spec not in ("none", "random"):
        registry.check_key_spec("--llm", "llm", spec, also=("random", "none"))


def make_simulator(spec: str):
    """The simulator LLM of --llm SPEC, which the command checked first (check_simulator, before
    anything is read or written); None for 'none' and 'random' (no LLM)."""
    from .. import registry
    from ..backend.llm.base import is_embedded

    if spec in ("none", "random"):
        return None
    print(f"loading the simulator LLM {spec} ...", flush=True)
    llm = registry.create("llm", spec)
    llm.spec = spec
    if is_embedded(spec):
        log.warning("the embedded SmolLM2-135M writes mostly off-topic predictions: fine to try the pipeline, "
                    "use a capable LLM (--llm openai:MODEL) for data to train on")
    return llm


@contextlib.asynccontextmanager
async def simulator(llm, oracle_cfg):
    """``llm`` (make_simulator's) tried with one short request first and closed at the end."""
    if llm is None:
        yield None
        return
    try:
        await _check_llm(llm, llm.spec, oracle_cfg.timeout_s or 60.0)
        yield llm
    finally:
        from ..runtime.base import close_components

        await close_components([llm], "kame data: ")


async def _check_llm(llm, spec: str, timeout_s: float) -> None:
    """One short request, so a server that is down or a wrong model name fails before the run."""
    from ..backend.llm.base import collect_reply
    from ..backend.types import ChatMessage

    try:
        await collect_reply(llm, [ChatMessage("user", "Say OK.")], timeout_s=timeout_s, max_tokens=4, max_words=0)
    except asyncio.TimeoutError:
        raise DataError(f"the simulator LLM {spec!r} gave no answer to a trial request within {timeout_s:g} s") from None
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"the simulator LLM {spec!r} failed a trial request: {type(exc).__name__}: {exc}") from exc


def past_end_warning(points: int, dialogues: int) -> list[str]:
    """A warning line when prediction points fell at or past their dialogue's end (a --delay
    longer than what follows them): left out, so those dialogues have fewer predictions (none:
    not even the true reply)."""
    if not points:
        return []
    return [f"warning: {counted(points, 'prediction point')} of {counted(dialogues, 'dialogue')} "
            f"would arrive at or past the dialogue's end (--delay too long?) and "
            f"{'were' if points != 1 else 'was'} left out"]


def levels_table(levels: Counter) -> list[str]:
    """Predictions per hint level as table lines (none: no lines)."""
    if not levels:
        return []
    return ["", "| hint level | " + " | ".join(str(k) for k in sorted(levels)) + " |",
            "|---|" + "---|" * len(levels),
            "| predictions | " + " | ".join(str(levels[k]) for k in sorted(levels)) + " |"]


def failures(failed: list[tuple[str, str]]) -> list[str]:
    """(name, error) of what failed as lines: the first ten, then how many more."""
    lines = [f"failed: {name}: {error}" for name, error in failed[:10]]
    if len(failed) > 10:
        lines.append(f"... and {len(failed) - 10} more failures (see the log)")
    return lines
