"""The timeline plot of one conversation (OUT.png of ``kame run`` and ``kame demo``): the user's
audio with its VAD events, the partial and final transcripts, each oracle prediction at the time
it reset the stream, and the agent's audio with its words and the first response marked.

    plot_timeline(Path("answer.png"), user, agent, rec, title="tandem, random-weight front-end")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE


def plot_timeline(path: Path, user: np.ndarray, agent: np.ndarray, rec: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(user.shape[0]) / SAMPLE_RATE
    fig, ax = plt.subplots(4, 1, figsize=(14, 9), sharex=True, gridspec_kw={"height_ratios": [2, 2, 2, 2]})
    ax[0].plot(t, user, lw=0.4, color="tab:blue")
    ax[0].set_ylabel("user")
    for v in rec["vad"]:
        ax[0].axvline(v["t"], color="green" if v["event"] == "start" else "red", lw=0.8, ls="--",
                      label=f"user speech {v['event']} (VAD)")
    _legend(ax[0])
    for i, tr in enumerate(rec["transcripts"]):
        ax[1].text(tr["t"], 0.9 - 0.12 * (i % 7), tr["text"][-60:] or "(empty)", fontsize=6,
                   fontweight="bold" if tr["final"] else "normal", color="black" if tr["final"] else "gray")
        ax[1].plot([tr["t"]], [0.95 - 0.12 * (i % 7)], "|", color="black")
    ax[1].set_ylim(0, 1)
    ax[1].set_yticks([])
    ax[1].set_ylabel("transcripts\n(partial gray,\nfinal bold)")
    preds: dict = {}  # prediction id -> [reset time, text]
    for o in rec["oracle"]:
        p = preds.setdefault(o["prediction_id"], [o["t"], ""])
        if o["event"] == "reset":
            p[0] = o["t"]
        p[1] += o.get("text", "")
    for i, (pid, (tp, text)) in enumerate(sorted(preds.items())):
        ax[2].axvline(tp, color="purple", lw=0.8)
        ax[2].text(tp, 0.9 - 0.12 * (i % 7), f"#{pid}:{text[:110]}", fontsize=6, color="purple")
    ax[2].set_ylim(0, 1)
    ax[2].set_yticks([])
    ax[2].set_ylabel("oracle predictions\n(reset time, text)")
    ax[3].plot(t, agent, lw=0.4, color="tab:orange")
    ax[3].set_ylabel("agent")
    words, cur, t_cur = [], "", None
    for a in rec["agent_text"]:
        if a["text"].startswith(" ") and cur:
            words.append((t_cur, cur))
            cur, t_cur = "", None
        cur += a["text"]
        t_cur = a["t"] if t_cur is None else t_cur
    if cur:
        words.append((t_cur, cur))
    top = float(np.abs(agent).max() or 1.0)
    for i, (tw, w) in enumerate(words[:400]):
        ax[3].text(tw, top * (0.9 - 0.25 * (i % 4)), w.strip()[:20], fontsize=5, color="saddlebrown")
    for m in rec["metrics"]:
        if m.get("name") == "first_response_latency":
            ax[3].axvline(m["t"], color="red", lw=0.6, ls=":", label="first response")
    _legend(ax[3])
    ax[3].set_xlabel("time (s)")
    ax[3].set_xlim(0, t[-1] if t.size else 1.0)
    fig.suptitle(title, fontsize=9)
    import warnings

    with warnings.catch_warnings():  # long labels: a slightly imperfect layout is fine
        warnings.simplefilter("ignore")
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), loc="upper right", fontsize=6)
