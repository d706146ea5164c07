"""The web page's metrics panel (static/app.js's renderMetrics, run in node) shows the cascade's
"reply_stall" metric (kame.cascade.reply: the wall seconds a stalled LLM/TTS's timer ran) in ms,
with what it measures as its tooltip (was: "reply stall 10", the raw name as its tooltip)."""

import json
import shutil
import subprocess
import textwrap

import pytest

from kame.server.app import STATIC_DIR

JS = textwrap.dedent("""
    const src = require("fs").readFileSync(process.argv[1], "utf8");
    const grab = (re) => (src.match(re) || [""])[0];
    const rows = [];
    globalThis.kame = {metrics: JSON.parse(process.argv[2])};
    globalThis.$ = () => ({tBodies: [{replaceChildren: (...trs) => rows.push(...trs)}]});
    globalThis.document = {createElement: () => ({kids: [], append(...k) { this.kids.push(...k); }})};
    globalThis.SHOWN_ELSEWHERE = new Set();
    eval(grab(/const SECONDS = [\\s\\S]*?;\\n/) + grab(/const EXPLAIN = [\\s\\S]*?;\\n/)
         + grab(/function renderMetrics\\(\\) \\{[\\s\\S]*?\\n\\}/)
         + "\\nglobalThis.renderMetrics = renderMetrics;");
    renderMetrics();
    console.log(JSON.stringify(rows.map((tr) => [tr.title, ...tr.kids.map((td) => td.textContent)])));
""")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_the_page_shows_a_reply_stall_in_ms_saying_what_it_is():
    out = subprocess.run(["node", "-e", JS, str(STATIC_DIR / "app.js"), json.dumps({"reply_stall": 9.5})],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == [["back-end LLM/TTS: a reply it ended by stalling: the wall time its stall timer ran",
                                "reply stall", "9500 ms"]]
