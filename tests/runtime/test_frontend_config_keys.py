"""A model-load error names the config key to change, its value and the config file that set it
(was: only the component, e.g. "front-end '/ck': its text tokenizer ... was not found", leaving the
user to find which of frontend.spec / codec.spec / backend.stt to change, and where). The message
the component gave follows, as it was."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kame.cli import main
from kame.config import key_source, load_config
from kame.errors import CheckpointError, ConfigError
from kame.runtime.backend import load_backend
from kame.runtime.clock import FakeClock
from kame.runtime.frontend import load_frame_models

from .test_frontend_checkpoint import make_ck


def _toml(tmp_path, text: str):
    path = tmp_path / "kame.toml"
    path.write_text(text)
    return path


def test_a_checkpoint_error_names_frontend_spec_and_the_file(tmp_path):
    ck = make_ck(tmp_path / "ck", tokenizer=False)  # its config.json names spm.model, which is not there
    toml = _toml(tmp_path, f'[frontend]\nspec = "{ck}"\n[backend]\nstt = "none"\nllm = "none"\n')
    with pytest.raises(CheckpointError) as e:
        load_frame_models(load_config(toml))
    said = str(e.value)
    assert said.startswith(f"frontend.spec = '{ck}' (from {toml}): front-end '{ck}': its text tokenizer 'spm.model'")
    assert said.endswith("put the file there or fix tokenizer_name in its config.json")  # the message, kept


def test_a_codec_that_cannot_load_names_codec_spec(tmp_path):
    gone = tmp_path / "gone.safetensors"
    with pytest.raises(CheckpointError, match=rf"^codec.spec = 'mimi:{gone}': .*gone.safetensors"):
        load_frame_models(load_config(None, ["frontend.spec=random:tiny", f"codec.spec=mimi:{gone}"]))
    toml = _toml(tmp_path, f'[codec]\nspec = "mimi:{gone}"\n')  # from a file: it is named
    with pytest.raises(CheckpointError, match=rf"^codec.spec = 'mimi:{gone}' \(from {toml}\): "):
        load_frame_models(load_config(toml, ["frontend.spec=random:tiny"]))


def test_an_unavailable_device_names_frontend_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"^frontend.device = 'cuda': device 'cuda' is not available here"):
        load_frame_models(load_config(None, ["frontend.device=cuda"]))


@pytest.mark.usefixtures("fake_components")
def test_a_message_that_names_its_key_gets_the_file_only(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("hello")
    toml = _toml(tmp_path, f'[backend]\nstt = "fake"\nllm = "fake"\nknowledge_dir = "{notes}"\n')
    cfg = load_config(toml)
    (notes / "a.txt").unlink()  # gone between the config's check and the load
    with pytest.raises(ConfigError) as e:
        load_backend(cfg, FakeClock())
    assert str(e.value).startswith(f"backend.knowledge_dir (from {toml}): {notes} holds no notes")  # (key said once)


def _refusing(kind):
    """A component whose creation refuses its spec (a load-time ConfigError, past the config's check)."""
    def make(arg=None, **kw):
        raise ConfigError(f"{kind} spec 'refusing:{arg}': unknown option 'nope'")

    return make


@pytest.fixture
def refusing(scratch):
    from kame import registry

    registry.register("stt", "refusing", _refusing("stt"))
    registry.register("llm", "refusing", _refusing("llm"))


@pytest.mark.usefixtures("fake_components", "refusing")
def test_backend_load_errors_name_backend_stt_and_backend_llm(tmp_path):
    toml = _toml(tmp_path, '[backend]\nstt = "refusing:x"\nllm = "fake"\n')
    with pytest.raises(ConfigError, match=rf"^backend.stt = 'refusing:x' \(from {toml}\): stt spec "
                                          r"'refusing:x': unknown option 'nope'"):
        load_backend(load_config(toml), FakeClock())
    # --set wins over the file: no file is named for it
    with pytest.raises(ConfigError, match=r"^backend.llm = 'refusing:m': llm spec 'refusing:m': unknown "
                                          r"option 'nope'"):
        load_backend(load_config(toml, ["backend.stt=fake", "backend.llm=refusing:m"]), FakeClock())
    # (an option kame's own spec does not take is refused earlier, by the config's check)
    with pytest.raises(ConfigError, match=r"^backend.stt: stt spec 'openai:whisper-1;nope=1': unknown option 'nope'"):
        load_config(None, ["backend.stt=openai:whisper-1;nope=1"])


def test_key_source():
    cfg = load_config(None, ["backend.llm=none"])
    assert key_source(cfg, "backend.llm") is None and key_source(cfg, "frontend.spec") is None


def test_kame_run_says_which_key_to_change(tmp_path, capsys):
    ck = make_ck(tmp_path / "ck", tokenizer=False)
    toml = _toml(tmp_path, f'[frontend]\nspec = "{ck}"\n[backend]\nstt = "none"\nllm = "none"\n')
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(24000, np.float32), 24000)
    assert main(["run", str(wav), "-o", str(tmp_path / "out.wav"), "--fast", "--no-png", "--config", str(toml)]) == 1
    assert f"kame: error: frontend.spec = '{ck}' (from {toml}): front-end '{ck}'" in capsys.readouterr().err


def test_the_cascade_names_its_keys_too(tmp_path, fake_components, refusing):
    from kame.cascade.agent import CascadeAgent

    toml = _toml(tmp_path, 'mode = "cascade"\n[backend]\nstt = "refusing:x"\nllm = "fake"\n')
    with pytest.raises(ConfigError, match=rf"^backend.stt = 'refusing:x' \(from {toml}\): stt spec "
                                          r"'refusing:x': unknown option 'nope'"):
        CascadeAgent(load_config(toml), clock=FakeClock())._load()
    with pytest.raises(ConfigError, match=r"^backend.llm = 'refusing:m': llm spec 'refusing:m': unknown "
                                          r"option 'nope'"):
        CascadeAgent(load_config(toml, ["backend.stt=fake", "backend.llm=refusing:m"]), clock=FakeClock())._load()


def test_key_source_forgets_a_file_key_a_table_override_set(tmp_path):
    """--set 'backend={llm_temperature=0.7}' sets backend.llm_temperature: no longer the file's
    (was: still named the file, whose value it no longer held)."""
    toml = _toml(tmp_path, "[backend]\nllm_temperature = 0.5\nllm = \"none\"\n")
    cfg = load_config(toml, ["backend={llm_temperature=0.7}"])
    assert cfg.backend.llm_temperature == 0.7 and key_source(cfg, "backend.llm_temperature") is None
    assert key_source(cfg, "backend.llm") == str(toml)
