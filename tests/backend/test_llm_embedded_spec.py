"""What ``embedded:PATH`` says about a path that is not a local GGUF file (no child process starts)."""

import pytest

from kame import registry
from kame.errors import ConfigError, NotAvailableError


def test_a_file_that_is_not_gguf_is_named_without_an_install_hint(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model\n")
    with pytest.raises(NotAvailableError, match=r"embedded LLM weights .*fake\.gguf are not a GGUF file "
                                                r"\(it starts with b'not ', not b'GGUF'\)") as ei:
        registry.create("llm", f"embedded:{fake}")
    assert "pip install" not in str(ei.value)  # no package is missing


@pytest.mark.parametrize("arg", ["hf://org/repo/model.gguf", "hf:org/repo", "https://example.com/m.gguf"])
def test_a_url_is_refused_unmangled(arg):
    with pytest.raises(ConfigError, match=f"llm spec 'embedded:{arg}': embedded takes a local .gguf file, not a "
                                          f"URL \\('{arg}'\\): download the file first"):
        registry.create("llm", f"embedded:{arg}")
