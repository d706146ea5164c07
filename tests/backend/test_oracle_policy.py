"""Re-prediction decisions (pure), the prompt builder, and the BM25 knowledge base."""

import re
import warnings

import pytest

from kame.backend.knowledge import KnowledgeBase, check_knowledge_dir
from kame.backend.policy import Decision, OraclePolicy, RestartGate
from kame.backend.prompt import Conversation, PromptConfig, build_messages
from kame.backend.types import Transcript, Word
from kame.config import BackendConfig
from kame.errors import ConfigError


def test_gate_rules_in_order():
    g = RestartGate(OraclePolicy(min_new_words=2, min_interval=0.5, max_restarts=2, window=2.0))
    assert g.decide(0.0, new_words=5, final=False, has_text=False) == Decision("none")
    assert g.decide(0.0, new_words=1, final=False, has_text=True) == Decision("none")
    assert g.decide(0.0, new_words=2, final=False, has_text=True) == Decision("start", "words")
    g.record(0.0)
    assert g.decide(0.3, new_words=4, final=False, has_text=True) == Decision("wait", "interval")
    assert g.decide(0.3, new_words=0, final=True, has_text=True) == Decision("start", "final")
    g.record(0.3)
    assert g.decide(0.9, new_words=3, final=False, has_text=True) == Decision("wait", "cap")
    assert g.decide(2.01, new_words=3, final=False, has_text=True) == Decision("start", "words")  # 0.0 left the window
    g.fail(2.01, failures=2)  # back-off 2 s
    assert g.decide(3.0, new_words=9, final=True, has_text=True) == Decision("wait", "backoff")
    assert g.decide(4.02, new_words=0, final=False, has_text=True) == Decision("start", "retry")
    g.ok()
    assert g.decide(4.02, new_words=0, final=False, has_text=True) == Decision("none")


def test_backoff_doubles_up_to_the_max():
    p = OraclePolicy(retry_backoff=0.5, max_backoff=3.0)
    assert [p.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_policy_from_config():
    cfg = BackendConfig()
    cfg.min_new_words, cfg.max_restarts, cfg.restart_window_s = 3, 4, 1.5
    p = OraclePolicy.from_config(cfg)
    assert (p.min_new_words, p.max_restarts, p.window, p.poll_interval) == (3, 4, 1.5, cfg.poll_interval_s)


def test_conversation_lines():
    conv = Conversation()
    w = lambda ws, t0: tuple(Word(x, t0 + i, t0 + i + 0.5) for i, x in enumerate(ws))  # noqa: E731
    conv.on_transcript(Transcript(w(["hi"], 0), False, 0.6))
    conv.on_transcript(Transcript(w(["hi", "there"], 0), True, 2.0))
    conv.on_agent_text("\u2581Hello", 2.5)
    conv.on_agent_text("\u2581friend.", 2.6)
    conv.on_transcript(Transcript(w(["how", "are"], 3), False, 4.6))
    cfg = PromptConfig(user_label="user", agent_label="moshi", max_words=20, system_prompt="Say {max_words} words.")
    system, user = build_messages(conv, cfg)
    assert system.content == "Say 20 words."
    assert user.content == "user: hi there\nmoshi: Hello friend.\nuser: how are"
    assert conv.user_words() == ["hi", "there", "how", "are"]
    assert conv.last_user_word_end() == 4.5
    assert len(conv.lines(PromptConfig(max_lines=2))) == 2


def test_bm25_ranking(tmp_path):
    (tmp_path / "a.md").write_text("Trains to Lyon leave every hour from the central station. " * 3)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("The bakery sells croissants and bread every morning.")
    (tmp_path / "c.json").write_text("ignored trains trains trains")
    kb = KnowledgeBase.from_folder(tmp_path, chunk_words=20, overlap=5)
    assert {c.source for c in kb.chunks} == {"a.md", "sub/b.txt"}
    hits = kb.search("when do trains leave for lyon", k=2)
    assert hits[0][1].source == "a.md" and all(h[1].source == "a.md" for h in hits)
    assert kb.search("croissants")[0][1].source == "sub/b.txt"
    assert kb.search("zebra unicorn") == []


def test_bm25_any_script_and_notes_of_stop_words_only(tmp_path):
    (tmp_path / "fr.md").write_text("Le café ouvre à sept heures près de la gare.")
    (tmp_path / "ja.md").write_text("東京 駅 は 大きい")
    assert KnowledgeBase.from_folder(tmp_path).search("quand ouvre le café")[0][1].source == "fr.md"  # was no hit
    assert KnowledgeBase.from_folder(tmp_path).search("東京")[0][1].source == "ja.md"
    for f in tmp_path.iterdir():
        f.unlink()
    (tmp_path / "stop.md").write_text("and the of it")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was a division by zero (RuntimeWarning, NaN scores)
        assert KnowledgeBase.from_folder(tmp_path).search("the museum") == []


def test_knowledge_dir_check_says_what_is_wrong(tmp_path, monkeypatch):
    missing, afile = tmp_path / "missing", tmp_path / "a.md"
    afile.write_text("notes")
    with pytest.raises(ConfigError, match=re.escape(f"knowledge_dir: {missing} is not a folder (nothing is there)")):
        KnowledgeBase.from_folder(missing)
    with pytest.raises(ConfigError, match=re.escape(f"backend.knowledge_dir: {afile} is not a folder (it is a file)")):
        check_knowledge_dir(afile, "backend.knowledge_dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_knowledge_dir("~") == tmp_path  # the message names the path as given, the result is expanded
    with pytest.raises(ConfigError, match="^knowledge_dir: ~/missing is not a folder"):
        check_knowledge_dir("~/missing")


def test_a_retry_after_wait_is_honoured_up_to_a_bound():
    """A service's Retry-After is waited for, but a far one (an HTTP date a day ahead, a server
    clock that runs fast) does not silence the oracle for the rest of the session."""
    g = RestartGate(OraclePolicy(retry_backoff=1.0))
    g.fail(100.0, 1, at_least=7.0)
    assert g.retry_at == 107.0
    g.fail(100.0, 1, at_least=86400.0)
    assert g.retry_at == 100.0 + RestartGate.MAX_RETRY_AFTER
    g.fail(100.0, 1, at_least=None)
    assert g.retry_at == 101.0


def test_word_restarts_wait_for_the_first_piece_finals_do_not():
    g = RestartGate(OraclePolicy(wait_first_token=True))
    assert g.decide(0.0, new_words=3, final=False, has_text=True, awaiting_first=True) == Decision("wait", "first_token")
    assert g.decide(0.0, new_words=0, final=True, has_text=True, awaiting_first=True) == Decision("start", "final")
    assert g.decide(0.0, new_words=3, final=False, has_text=True, awaiting_first=False) == Decision("start", "words")
    ref = RestartGate(OraclePolicy())  # SakanaAI/kame's rule (the default)
    assert ref.decide(0.0, new_words=3, final=False, has_text=True, awaiting_first=True) == Decision("start", "words")


@pytest.mark.parametrize("files, found", [({"a.rst": "notes", "sub/b.pdf": "%PDF"}, "it holds only .pdf, .rst files"),
                                          ({}, "it is empty")])
def test_a_knowledge_folder_without_notes_is_a_config_error(tmp_path, files, found):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"knowledge_dir: {tmp_path} holds no notes ({found}): the knowledge "
                                                    "base reads .txt and .md files")):
        KnowledgeBase.from_folder(tmp_path)
    (tmp_path / "c.TXT").write_text("the museum opens at nine")
    assert [c.source for c in KnowledgeBase.from_folder(tmp_path).chunks] == ["c.TXT"]
