"""The web page's metrics panel (static/app.js's onMeta), run in node on "metric" metadata."""

import json
import shutil
import subprocess
import textwrap

import pytest

from kame.server.app import STATIC_DIR

JS = textwrap.dedent("""
    const src = require("fs").readFileSync(process.argv[1], "utf8");
    const grab = (name) => (src.match(new RegExp("function " + name + "\\\\([^)]*\\\\) \\\\{[\\\\s\\\\S]*?\\\\n\\\\}")) || [""])[0];
    globalThis.kame = {metrics: {}, metas: 0};
    globalThis.$ = () => ({});
    globalThis.renderMetrics = () => {};
    globalThis.SHOWN_ELSEWHERE = new Set();
    globalThis.log = () => {};
    eval(grab("shownMetric") + "\\n" + grab("onMeta") + "\\nglobalThis.onMeta = onMeta;");
    const seen = [];
    for (const d of JSON.parse(process.argv[2])) { onMeta(d); seen.push(kame.metrics.oracle_lag); }
    console.log(JSON.stringify(seen));
""")


def _lag(value, stage, pid):
    return {"type": "metric", "name": "oracle_lag", "value": value, "labels": {"prediction_id": pid, "stage": stage}}


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_the_page_shows_the_fed_oracle_lag_only():
    # (was: every oracle_lag, so the producer's "emitted" one, 0.16 s lower, until the "fed" one came,
    # and for good when a prediction was replaced before its first token was fed)
    metas = [_lag(0.59, "emitted", 1), _lag(0.75, "fed", 1), _lag(0.40, "emitted", 2), _lag(0.30, "emitted", 3),
             {"type": "metric", "name": "oracle_lag", "value": 0.9}]  # (no stage: another server's, shown)
    out = subprocess.run(["node", "-e", JS, str(STATIC_DIR / "app.js"), json.dumps(metas)], check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == [None, 0.75, 0.75, 0.75, 0.9]
