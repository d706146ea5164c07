"""`kame serve` stopped (SIGTERM, Ctrl-C) while the embedded LLM's dispatcher reloads its dead
child: the server's stop terminates that load, logs it, and exits at once, the child gone. Was:
nothing stopped the shared back-end children before the interpreter's exit, which waited out the
whole reload (~50 s) in silence, and a second Ctrl-C printed concurrent.futures' traceback."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.backend.reloading_child import ROOT, SLOW_LOAD_S, gone

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 0)]

SCRIPT = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {ROOT!r})
    from kame import cli
    from tests.backend.reloading_child import start_reloading

    if __name__ == "__main__":
        worker, loading = start_reloading(Path(sys.argv[1]), shared=True)
        print("loading pid", loading, flush=True)
        status = cli.main(["serve", "--agent", "echo", "--port", "0"])
        for _ in range(100):  # (the dispatcher sees the end of the load it was waiting for)
            if worker.state != "loading":
                break
            time.sleep(0.05)
        print("after serve: the LLM child is", worker.state, flush=True)
        sys.exit(status)
""")


@pytest.mark.parametrize("sig, status", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_stop_during_the_llm_childs_reload_terminates_it_and_exits_at_once(tmp_path, sig, status):
    script = tmp_path / "serve_while_reloading.py"
    script.write_text(SCRIPT)
    # SIGINT at its default (a test run from a background job would pass it on ignored)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "stand-in.gguf")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, "")] + [lines.put("")],
                     daemon=True).start()
    out, pid = [], None
    try:
        while not out or "serving on http://" not in out[-1]:
            out.append(lines.get(timeout=60))
            assert out[-1], f"kame serve ended before it served: {proc.stderr.read()}"
            if out[-1].startswith("loading pid"):
                pid = int(out[-1].split()[-1])
        proc.send_signal(sig)
        try:
            got = proc.wait(timeout=SLOW_LOAD_S / 2)  # (well before the reload would have ended)
        except subprocess.TimeoutExpired:
            pytest.fail("kame serve waited for the embedded LLM's reload after the signal")
        err = proc.stderr.read()
        while out[-1]:
            out.append(lines.get(timeout=10))
        assert got == status, err
        assert any("after serve: the LLM child is stopped" in x for x in out), out  # (by the stop, not at exit)
        assert f"stopping the embedded LLM child while it loads the model (pid {pid})" in err, err
        assert "Traceback" not in err
        assert gone(pid), "the loading child outlived kame serve"
    finally:
        proc.kill()
        proc.wait()
        if pid is not None and not gone(pid, 0):
            proc = subprocess.run(["kill", "-9", str(pid)])
