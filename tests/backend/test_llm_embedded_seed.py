"""The embedded LLM's child samples a request given a seed from torch's RNG seeded so for that
request alone (kame data oracle / synth --llm embedded: the same --seed, the same oracle; was:
the child's unseeded RNG, another oracle each run). A request without one samples as before, from
the child's own RNG, which a seeded request leaves as it found it. Stand-in model and tokenizer;
the real one: tests/train/test_oracle_sim.py (slow)."""

import pytest

from kame.backend import childproc
from kame.backend.llm import embedded_child

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


class Tok:
    eos_token_id = 0

    def apply_chat_template(self, messages, **kw):
        return {"input_ids": torch.zeros((1, 3), dtype=torch.long)}

    def decode(self, ids, **kw):
        ids = [ids] if isinstance(ids, int) else ids
        return "".join(f" w{i}" for i in ids if i)


class SamplingModel:
    """Draws its 8 tokens from torch's RNG when sampling (as generate's do_sample does)."""

    class config:
        max_position_embeddings = 1000

    def generate(self, input_ids, streamer=None, stopping_criteria=None, do_sample=False, **kw):
        streamer.put(input_ids)
        ids = torch.randint(1, 1000, (8,)) if do_sample else torch.arange(1, 9)
        for i in ids:
            streamer.put(i[None])
        streamer.end()
        return torch.zeros((1, input_ids.shape[1] + 8), dtype=torch.long)


class Conn:
    def __init__(self):
        self.sent = []

    def send(self, item):
        self.sent.append(item)


def reply(seed=None, temperature=0.7):
    conn = Conn()
    embedded_child._generate(conn, SamplingModel(), Tok(), childproc.CTX.Value("q", 0, lock=False), 1000,
                             1, [{"role": "user", "content": "hi"}], 20, temperature, 1.0, seed)
    return "".join(v for kind, _, v in conn.sent if kind == "text")


def test_a_seeded_request_samples_the_same_reply_and_leaves_the_childs_rng_as_it_was():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = reply(seed=7)
    assert reply(seed=7) == first and reply(seed=8) != first
    assert torch.equal(torch.get_rng_state(), state)  # (the unseeded requests' draws: not moved)
    unseeded = reply()
    torch.set_rng_state(state)
    assert reply() == unseeded != first  # without a seed: the child's own RNG, as before
    assert reply(seed=7, temperature=0.0) == reply(temperature=0.0)  # (greedy: no draw at all)


def test_a_seeded_request_leaves_the_gpus_alone(monkeypatch):
    """The child runs on the CPU: a seeded request forks the CPU's RNG alone (was: fork_rng's
    default, every visible GPU's RNG saved, which starts CUDA on each, with a warning when >1)."""
    touched = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": touched.append(device))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": touched.append(device))
    assert reply(seed=7) == reply(seed=7)
    assert touched == []
