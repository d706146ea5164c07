"""What a remote client is told of a failure (kame.runtime.base.client_form, backend_brief): the
component and a short cause; the detail (internal URL, the upstream's answer, where the API key
comes from) stays on the Python objects, for `kame run` and the server's log."""

from kame.runtime.base import (SEE_LOG, AgentText, BackendHealth, ErrorEvent, Meta, backend_brief, client_form,
                               internal_error)

DETAIL = ("LLM http://10.1.2.3:8000/v1/chat/completions: HTTP 401: Incorrect API key provided: sk-proj-abc1****WXYZ "
          "(check the API key: api_key=, else OPENAI_API_KEY; the key sent is from OPENAI_API_KEY)")


def test_a_backend_failure_keeps_its_detail_and_has_a_short_form():
    out = []
    BackendHealth(out.append).report("llm", False, 1.5, DETAIL, f"back-end llm failed (front-end continues): {DETAIL}")
    ev, meta = out
    assert ev.message.endswith(DETAIL) and meta.data["error"] == DETAIL  # (kame run: all of it)
    short = "llm back-end failed (HTTP 401 from the LLM server); see the server log"
    assert ev.brief == short
    sent = [client_form(o) for o in out]
    assert sent[0] == ErrorEvent(short, 1.5, short)
    assert sent[1].data == {**meta.data, "error": short} and meta.data["error"] == DETAIL  # (a copy)
    for o in sent:
        text = repr(o)
        for secret in ("10.1.2.3", "Incorrect", "sk-proj", "OPENAI_API_KEY", "/v1"):
            assert secret not in text, (secret, text)


def test_backend_brief_names_the_cause_class():
    cases = {
        "STT http://h/v1/audio: cannot connect (Connection refused); is the server running?":
            "cannot reach the STT server",
        "LLM http://h/v1/chat: timed out, no response within 30 s": "timed out",
        "llm stalled: nothing within 8 s of the request": "stalled",
        "TTS http://h/v1/speech: the audio is over the openai TTS adapter's limit of 64 MiB":
            "its answer was too large",
        "LLM http://h/v1/chat: HTTP 503: overloaded": "HTTP 503 from the LLM server",
    }
    for error, cause in cases.items():
        component = error.split()[0].lower()
        assert backend_brief(component, error) == f"{component} back-end failed ({cause}); {SEE_LOG}", error
    assert backend_brief("tts", "RuntimeError: /opt/models/x.bin: bad magic") == f"tts back-end failed; {SEE_LOG}"
    assert backend_brief("llm", None) == f"llm back-end failed; {SEE_LOG}"


def test_backend_brief_says_an_embedded_back_end_s_child_process_died_or_hung():
    """(QA k45 chaos finding 4: a remote client was told no cause when a child process died)"""
    cases = {
        ("stt", "the pocketsphinx child process died (exit code -9)"): "its process died; restarting",
        ("llm", "embedded LLM failed: the LLM child process died (exit code -9) between requests; restarting "
                "it"): "its process died; restarting",
        ("llm", "embedded LLM failed: BackendError: the embedded LLM child for SmolLM2.gguf failed to start: "
                "the child exited while loading (exit code -9)"): "its process died; restarting",
        ("stt", "the pocketsphinx child process did not answer for 30 s (exit code -15)"):
            "its process hung; restarting",
        ("llm", "embedded LLM failed: the LLM child process hung (no stop 10 s after a cancel) and was terminated "
                "(exit code -15)"): "its process hung; restarting",
    }
    for (component, error), cause in cases.items():
        assert backend_brief(component, error) == f"{component} back-end failed ({cause}); {SEE_LOG}", error


def test_kame_s_internal_errors_are_cut_others_pass_as_they_are():
    step = internal_error("front-end step failed", RuntimeError("CUDA error at /opt/kame/x.cu:12"), 1.0)
    assert step.message == "front-end step failed: CUDA error at /opt/kame/x.cu:12"  # (kame run, the log)
    assert client_form(step).message == f"front-end step failed; {SEE_LOG}"
    assert client_form(internal_error("prompt building failed", KeyError("x"), 1.0)).message == \
        f"prompt building failed; {SEE_LOG}"
    for kept in (ErrorEvent("bad audio dropped: 3 NaN samples", 1.0), ErrorEvent("stt failed: 0", 1.0),
                 # a plugin's own error that happens to begin with the words of kame's: not rewritten
                 ErrorEvent("front-end step failed: my plugin's own words", 1.0),
                 ErrorEvent("hybrid routing failed: choose another route", 1.0),
                 Meta({"type": "backend", "component": "llm", "status": "up", "error": None}),
                 Meta({"type": "stats", "frames": 3}), AgentText("hi", 1.0)):
        assert client_form(kept) is kept
    own = ErrorEvent("plugin x failed: details", 1.0, "plugin x failed")  # (a plugin's own short form)
    assert client_form(own).message == "plugin x failed"
