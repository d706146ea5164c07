"""The timeline plot of one conversation (OUT.png of ``kame run`` and ``kame demo``): the user's
audio with its VAD events, the partial and final transcripts, each oracle prediction at the time
it reset the stream, and the agent's audio with its words and the first response marked. A long
track is drawn as its envelope (the min and max of each pixel column: envelope), so the plot's
memory does not grow with the conversation's length.

    plot_timeline(Path("answer.png"), user, agent, rec, title="tandem, random-weight front-end")
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..backend.types import FRAME_S
from ..paths import write_replacing
from .runreport import turn_started, words_not_heard
from .runsummary import AUDIBLE

WIDTH_IN = 14.0  # the figure's width (inches) up to WIDE_AFTER_S of conversation; it grows with it ...
WIDE_AFTER_S = 60.0
MAX_WIDTH_IN = 40.0  # ... up to this (4400 px at the PNG's DPI)
DPI = 110
_SCAN = 10 * SAMPLE_RATE  # agent samples looked at at once for an audible one (_audible)
WORDS_PER_IN = 30  # the agent's words the plot shows per inch of its width; beyond, evenly chosen (was: the first 400)
# matplotlib's warning for each character the font has no glyph for ("Glyph 12399 (\N{HIRAGANA LETTER HA})
# missing from font(s) DejaVu Sans."): not shown (plot_timeline)
_MISSING_GLYPH = r"Glyph \d+ .*missing from"


def plot_timeline(path: Path, user: np.ndarray, agent: np.ndarray, rec: dict, title: str) -> None:
    """Write the conversation's timeline plot to ``path`` (PNG). Text the font has no glyph for
    (CJK, emoji, a control character) is drawn as a box, without matplotlib's "Glyph N missing
    from font(s)" warning for each character (was: a flood of them on stderr); other warnings
    are shown."""
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_MISSING_GLYPH, category=UserWarning)
        fig = timeline_figure(user, agent, rec, title)
        try:  # (as write_wav: whole or not at all, and KameError naming the file it could not write)
            write_replacing(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"), "timeline plot")
        finally:
            plt.close(fig)


def figure_width(duration_s: float) -> float:
    """The figure's width in inches: WIDTH_IN, wider for a conversation longer than WIDE_AFTER_S
    (in proportion), up to MAX_WIDTH_IN."""
    return min(MAX_WIDTH_IN, max(WIDTH_IN, WIDTH_IN * duration_s / WIDE_AFTER_S))


def envelope(track: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(times in s, values) that draw ``track`` (samples at SAMPLE_RATE) on ``columns`` pixel
    columns as its samples would: a track of up to 2 points per column as it is, a longer one as
    each column's min (at its first sample's time) and max (at its last's), 2 points per column
    whatever its length (was: every sample drawn, ~2 MB of matplotlib's memory per second of a
    `kame run`)."""
    n = track.shape[0]
    if n <= 2 * columns:
        return np.arange(n) / SAMPLE_RATE, track
    per = -(-n // columns)  # (samples per column, rounded up: at most ``columns`` of them)
    starts = np.arange(0, n, per)
    ends = np.minimum(starts + per, n) - 1
    values = np.stack([np.minimum.reduceat(track, starts), np.maximum.reduceat(track, starts)], 1)
    return np.stack([starts, ends], 1).ravel() / SAMPLE_RATE, values.ravel()


def timeline_figure(user: np.ndarray, agent: np.ndarray, rec: dict, title: str):
    """The timeline's matplotlib figure (plot_timeline writes it; the caller closes it). Every agent
    word is shown up to WORDS_PER_IN per inch of the figure's width; beyond, as many evenly over the
    whole conversation, and a note on the agent's panel says so (was: the first 400 words only,
    silently: a long run's last turns had audio but no words)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = figure_width(max(user.shape[0], agent.shape[0]) / SAMPLE_RATE)
    fig, ax = plt.subplots(4, 1, figsize=(width, 9), sharex=True, gridspec_kw={"height_ratios": [2, 2, 2, 2]})
    columns = int(width * DPI)
    _track(ax[0], user, columns, "tab:blue")
    ax[0].set_ylabel("user")
    for v in rec["vad"]:
        ax[0].axvline(v["t"], color="green" if v["event"] == "start" else "red", lw=0.8, ls="--",
                      label=f"user speech {v['event']} (VAD)")
    _legend(ax[0])
    for i, tr in enumerate(rec["transcripts"]):
        ax[1].text(tr["t"], 0.9 - 0.12 * (i % 7), tr["text"][-60:] or "(empty)", fontsize=6,
                   fontweight="bold" if tr["final"] else "normal", color="black" if tr["final"] else "gray", clip_on=True)
        ax[1].plot([tr["t"]], [0.95 - 0.12 * (i % 7)], "|", color="black")
    ax[1].set_ylim(0, 1)
    ax[1].set_yticks([])
    ax[1].set_ylabel("transcripts\n(partial gray,\nfinal bold)")
    preds: dict = {}  # prediction id -> [reset time, text]
    for o in rec["oracle"]:
        if o.get("bare"):  # (a bare reset, hybrid routing's or a reset_on_first_token=false restart: it cuts the
            # queued tokens, its start id then pad is fed; no prediction, as the stats count it)
            continue
        p = preds.setdefault(o["prediction_id"], [o["t"], ""])
        if o["event"] == "reset":
            p[0] = o["t"]
        p[1] += o.get("text", "")
    for i, (pid, (tp, text)) in enumerate(sorted(preds.items())):
        ax[2].axvline(tp, color="purple", lw=0.8)
        ax[2].text(tp, 0.9 - 0.12 * (i % 7), f"#{pid}:{text[:110]}", fontsize=6, color="purple", clip_on=True)
    ax[2].set_ylim(0, 1)
    ax[2].set_yticks([])
    ax[2].set_ylabel("oracle predictions\n(reset time, text)")
    _track(ax[3], agent, columns, "tab:orange")
    ax[3].set_ylabel("agent")
    # (y in axes fractions, clipped: a label never spills out of its panel)
    words = agent_word_positions(rec, agent)
    room = int(WORDS_PER_IN * width)
    shown = words if len(words) <= room else \
        [words[i] for i in np.unique(np.linspace(0, len(words) - 1, room).round().astype(int))]  # (first and last kept)
    for tw, y, w in shown:
        ax[3].text(tw, y, w, fontsize=5, color="saddlebrown", transform=ax[3].get_xaxis_transform(), clip_on=True)
    if len(shown) < len(words):
        ax[3].text(0.002, 0.02, f"{len(shown)} of {len(words)} agent words shown, evenly over the whole run (all of "
                   f"them are in the JSON's agent_text)", fontsize=7, color="red",
                   transform=ax[3].transAxes, gid="thinned_words")
    for tr in first_response_times(rec):
        ax[3].axvline(tr, color="red", lw=0.6, ls=":", label="first response")
    _legend(ax[3])
    ax[3].set_xlabel("time (s)")
    ax[3].set_xlim(0, (user.shape[0] - 1) / SAMPLE_RATE if user.shape[0] else 1.0)
    fig.suptitle(title, fontsize=9)
    import warnings

    with warnings.catch_warnings():  # long labels: a slightly imperfect layout is fine
        warnings.simplefilter("ignore")
        fig.tight_layout()
    return fig


def _track(ax, track: np.ndarray, columns: int, color: str) -> None:
    """``track`` drawn on ``ax``: its samples, or its envelope with the band between each column's
    min and max filled (as a column's many samples drew it)."""
    t, y = envelope(track, columns)
    ax.plot(t, y, lw=0.4, color=color)
    if y.shape[0] < track.shape[0]:
        ax.fill_between(t[0::2], y[0::2], y[1::2], color=color, lw=0)


def first_response_times(rec: dict) -> list[float]:
    """When each first response began: the user's end of speech plus the first_response_latency
    metric's value (the metric's own "t" is when it was measured: the VAD reports an end of
    speech a while after it, and a tandem already talking then gets 0.0, its answer being at the
    end of speech). The end of speech is its turn's t_user_end (a cascade's "turn" event, hybrid
    routing's "route": turn_started; was: the cascade's only, so a routed reply's marker took an
    earlier utterance's VAD end), else the last VAD end at or before it; without either, the
    metric's "t"."""
    ends = {d.get("turn"): d["t_user_end"] for d in rec.get("other", ())
            if turn_started(d) and isinstance(d.get("t_user_end"), (int, float))}
    vad_ends = [v["t"] for v in rec.get("vad", ()) if v.get("event") == "end"]
    out = []
    for m in rec.get("metrics", ()):
        if m.get("name") != "first_response_latency":
            continue
        end = ends.get((m.get("labels") or {}).get("turn"))
        if end is None:  # (the response is found at most a frame after the metric's t)
            end = max((t for t in vad_ends if t <= m["t"] - m["value"] + FRAME_S + 1e-6), default=None)
        out.append(m["t"] if end is None else end + m["value"])
    return out


def agent_word_positions(rec: dict, agent: np.ndarray) -> list[tuple[float, float, str]]:
    """(time, height as a fraction of the panel, word) of each agent word in the plot, in time
    order. A tandem's words are at the step that produced them, as is its audio. A reply of the
    LLM's (a cascade's turn, or a turn hybrid routing answered) is text long before it is speech
    (the LLM streams ahead of the TTS; hybrid routing's front-end is muted meanwhile), so its
    words are spread over the span it was heard in (its first response to its "agent_turn", or to
    the last audible sample), by their length in characters: an estimate, the data holds no time
    per word. Only the words heard are drawn (the agent_turn's text), then "(+N not heard)" at
    the cut when a barge-in, a later final or a failure stopped the reply (N: the words a TTS
    would have spoken, runreport.words_not_heard; alone when it was cut before its first word);
    a reply without an agent_turn yet (the file ended first) shows what it wrote (was: hybrid
    routing's reply drawn when the LLM streamed it, over the muted front-end's silence, and a cut
    reply's every word drawn)."""
    pieces = rec.get("agent_text", ())
    replies = _replies(rec)
    owner: dict = {}  # agent_text index -> its reply's index in replies
    for r, (_, _, _, idx) in enumerate(replies):
        owner.update((i, r) for i in idx)
    front = _words([pieces[i] for i in range(len(pieces)) if i not in owner])  # (the front-end's, as written)
    out: list[list] = []
    onsets = {}
    for m, t in zip([m for m in rec.get("metrics", ()) if m.get("name") == "first_response_latency"],
                    first_response_times(rec)):
        onsets.setdefault((m.get("labels") or {}).get("turn"), t)
    for r, (tid, t_next, done, idx) in enumerate(replies):
        mine = [pieces[i] for i in idx if owner[i] == r]
        said = None if done is None else done.get("text")  # (the words heard; None: not known)
        words = _words(mine) if said is None else [[0.0, w] for w in str(said).split()]
        if not words:  # (nothing heard: only what was not, at the cut; was: no trace of the reply)
            unheard = 0 if said is None else words_not_heard(done)
            if unheard > 0:
                out.append([done["t"], f"(+{unheard} not heard)"])
            continue
        ended = done["t"] if done is not None else None
        stop = min(t_next, float("inf") if ended is None else ended)
        onset = onsets.get(tid)
        if onset is None:  # (no latency metric: the first audible sample after its first text)
            first = _audible(agent, mine[0]["t"], stop) if mine else None
            if first is None and done is None:
                front += words  # (never heard: left at the time it was written)
                continue
            onset = first if first is not None else mine[0]["t"] if mine else ended
        heard = _audible(agent, onset, stop, last=True) if ended is None else None
        end = max(onset, ended if ended is not None else heard if heard is not None else onset)
        chars = np.cumsum([0] + [len(w[1]) + 1 for w in words])
        for w, c in zip(words, chars):
            w[0] = onset + (end - onset) * c / max(1, chars[-1])
        out += words
        unheard = 0 if said is None else words_not_heard(done)  # (the summary's agent_unspoken_words' count)
        if unheard > 0:
            out.append([end, f"(+{unheard} not heard)"])
    # (a reply cut in the step the front-end's next word came in: the reply's words first)
    out = sorted(out + [w + [1] for w in front], key=lambda w: (w[0], w[2:]))
    return [(w[0], 0.85 - 0.22 * (i % 4), w[1].strip()[:20]) for i, w in enumerate(out)]


def _audible(agent: np.ndarray, start: float, stop: float, last: bool = False) -> float | None:
    """The time (s) of the first (``last``: the last) sample of ``agent`` louder than AUDIBLE at
    ``start`` or later and before ``stop``, or None; looked for a piece of _SCAN samples at a
    time (was: every audible sample's time at once, 16 bytes a sample of a long run)."""
    if not start < stop:  # (no time between them, or NaN)
        return None
    lo = max(0, math.floor(start * SAMPLE_RATE) - 1) if start > 0 else 0
    hi = agent.shape[0] if math.isinf(stop) else min(agent.shape[0], math.ceil(stop * SAMPLE_RATE) + 1)
    pieces = range(lo, hi, _SCAN)
    for a in reversed(pieces) if last else pieces:
        t = (a + np.flatnonzero(np.abs(agent[a:min(a + _SCAN, hi)]) > AUDIBLE)) / SAMPLE_RATE
        t = t[(t >= start) & (t < stop)]
        if t.size:
            return float(t[-1] if last else t[0])
    return None


def _words(pieces) -> list[list]:
    """[time, word] of text pieces ({"t", "text"}): a word goes on until a piece starts with a
    space or follows one; a word's time is its first piece's."""
    words: list[list] = []
    for a in pieces:
        text = a["text"]
        if words and (not text.strip() or not (text[:1].isspace() or words[-1][1][-1:].isspace())):
            words[-1][1] += text  # (a word's next piece, or spaces after it)
        elif text.strip():
            words.append([a["t"], text])
    return words


def _replies(rec: dict) -> list[tuple]:
    """(turn id, end of its text's window, its "agent_turn" or None, indices of its agent_text
    pieces) of each LLM reply: a cascade's turns (the pieces from its "turn" event to the next
    one's), and the turns hybrid routing answered (from their "route" event: the pieces that
    spell the reply, the front-end being muted while it is under way)."""
    other = [d for d in rec.get("other", ()) if isinstance(d.get("t"), (int, float))]
    pieces = rec.get("agent_text", ())
    done = {d.get("turn"): d for d in other if d.get("type") == "agent_turn"}
    out = []
    turns = sorted((d["t"], d.get("turn")) for d in other if d.get("type") == "turn")
    for (t0, tid), t1 in zip(turns, [t for t, _ in turns[1:]] + [float("inf")]):
        out.append((tid, t1, done.get(tid), [i for i, a in enumerate(pieces) if t0 <= a["t"] < t1]))
    for d in other:  # (turn_started: the rule of the summary and kame client too)
        tid = d.get("turn")
        if d.get("type") != "route" or not turn_started(d):
            continue
        end = done[tid] if tid in done else None
        t1 = end["t"] if end is not None else float("inf")
        idx = [i for i, a in enumerate(pieces) if d["t"] <= a["t"] <= t1]
        if end is not None:
            idx = _spelling(pieces, idx, str(end.get("reply") or ""), edges=(d["t"], t1))
        else:  # (under way when the file ended: everything since; the front-end is muted)
            idx = [i for i in idx if pieces[i]["t"] > d["t"]]
        out.append((tid, float("inf"), end, idx))
    return out


def _spelling(pieces, idx: list[int], reply: str, edges: tuple[float, float] = (float("nan"),) * 2) -> list[int]:
    """Those of the pieces ``idx`` (in order) that spell ``reply`` or its start (spaces aside):
    a run of them that begins it and goes on spelling it, the one that spells the most of it
    (then of the most pieces; then of the fewest sent at ``edges``, the times of the route and of
    the cut; the first on a tie). A routed reply's window may hold a front-end word at each end,
    sent in the same step as the route or the cut: one that begins the reply too (" The" before
    "The answer ...") starts a run that stops at the reply's own first piece, so that run is not
    the one kept (was: taken, and the reply's pieces left as the front-end's); one that spells
    all of a one-piece reply (" Yes" for "Yes") is the front-end's, sent at an edge (was: kept,
    being the first)."""
    want = " ".join(reply.split())
    best, key = [], (0, 0, 0)
    for k in range(len(idx)):
        text, mine = "", []
        for i in idx[k:]:
            more = text + pieces[i]["text"]
            if not (more.strip() and want.startswith(" ".join(more.split()))):
                break
            text = more
            mine.append(i)
        at_edges = sum(1 for i in mine if pieces[i]["t"] in edges)
        if (len(" ".join(text.split())), len(mine), -at_edges) > key:
            best, key = mine, (len(" ".join(text.split())), len(mine), -at_edges)
    return best


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), loc="upper right", fontsize=6)
