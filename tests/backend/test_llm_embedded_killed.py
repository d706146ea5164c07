"""A killed embedded-LLM child leaves nothing for the parent's exit to complain about: the
child's model load (transformers' GGUF reader draws a tqdm bar) used to create tqdm's
cross-process lock, a named semaphore that only the child could unlink, so after a SIGKILL the
parent's exit printed the resource tracker's "There appear to be 1 leaked semaphore objects"."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal
    from kame.backend import childproc
    from kame.backend.llm import embedded_child

    def target(conn, cancel):  # the real child's entry with a stand-in model load
        def load_model(gguf):
            from tqdm import tqdm
            for _ in tqdm(range(3), desc="de-quantizing"):  # as transformers' GGUF reader does
                pass
            return None, None
        embedded_child.load_model = load_model
        embedded_child._child_main(conn, "stand-in.gguf", cancel)

    if __name__ == "__main__":
        cancel = childproc.CTX.Value("q", 0, lock=False)
        proc, conn = childproc.start_child(target, (cancel,), name="kame-test-llm", what="a stand-in")
        os.kill(proc.pid, signal.SIGKILL)  # (an operator's kill, the OOM killer)
        print("child exit code", childproc.reap_child(proc, conn))
""")


def test_a_killed_child_leaves_no_semaphore_to_clean_up(tmp_path):
    script = tmp_path / "kill_child.py"  # (a file: the spawned child imports the target from it)
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "child exit code -9" in done.stdout, done.stderr
    assert "leaked semaphore" not in done.stderr
