// kame browser client: microphone -> 0x08 PCM -> /api/chat?pcm=1 -> 0x08 PCM playback, plus
// live transcript / oracle / latency from 0x04 metadata. Plain JS, no build step.
// Protocol: docs/protocol.md. Test hooks: window.kame (counters), window.kameStart(),
// ?resample (use the browser's native rate + resampling in the worklet).
"use strict";

const KIND = { HANDSHAKE: 0, AUDIO: 1, TEXT: 2, CONTROL: 3, METADATA: 4, ERROR: 5, PING: 6, PCM: 8 };
const RATE = 24000;
const $ = (id) => document.getElementById(id);

// One session's counters and state (start() begins each session with a fresh set).
const fresh = () => ({
  connected: false, handshake: null, audioIn: 0, audioOut: 0, samplesOut: 0, texts: 0,
  metas: 0, errors: [], oracleResets: 0, transcript: "", oracle: "", agentText: "",
  metrics: {}, dropped: 0, inputDropped: 0, closed: null, outRmsMax: 0, stats: null, components: null, oracleHistory: [],
  lastMeta: null, contextRate: null,
});
const kame = (window.kame = fresh());

// The session being started or live, null when none: {ws, ctx, stream, node, stopped}. Each
// start() makes its own, and every handler acts on its own session only: a second click while
// one starts, or the late close of an old socket, never touches a newer session.
let sess = null;
// Stopped sessions' sockets until their close event: the server answers a close once its session
// is closed and frees its place only then, so the next start() waits for them (up to 5 s) before
// asking /api/health (was: "too many sessions from your address" right after a stop).
const closing = new Set();
let ctx = null, playTime = 0, level = 0, levelOut = 0; // (ctx: the live session's audio context, for playback)

function log(msg, cls) {
  const d = document.createElement("div");
  if (cls) d.className = cls;
  d.textContent = new Date().toISOString().slice(11, 23) + "  " + msg;
  $("log").appendChild(d);
  $("log").scrollTop = 1e9;
}

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = "status " + (cls || "idle");
}

// The WebSocket URL, relative to the page as its other requests are: a page served behind a
// reverse proxy under a path (https://host/kame/) connects to wss://host/kame/api/chat, not wss://host/api/chat.
function wsUrl(href) {
  const page = new URL(href || location.href);
  const url = new URL("api/chat", page);
  url.protocol = page.protocol === "https:" ? "wss:" : "ws:";
  const p = new URLSearchParams({ pcm: "1" });
  if (page.searchParams.get("token")) p.set("token", page.searchParams.get("token"));
  url.search = "?" + p;
  return url.href;
}

function sendPcm(s, f32) {
  if (s !== sess || !s.ws || s.ws.readyState !== WebSocket.OPEN || !kame.handshake) return;
  const msg = new DataView(new ArrayBuffer(1 + 2 * f32.length));
  msg.setUint8(0, KIND.PCM);
  let e = 0;
  for (let i = 0; i < f32.length; i++) {
    const s = Math.max(-1, Math.min(1, f32[i]));
    e += s * s;
    msg.setInt16(1 + 2 * i, s * 32767, true);
  }
  level = Math.sqrt(e / f32.length);
  s.ws.send(msg.buffer);
  kame.audioIn++;
  $("n-in").textContent = kame.audioIn;
}

function play(payload) {
  const n = payload.byteLength >> 1;
  if (!n) return;
  const dv = new DataView(payload.buffer, payload.byteOffset, n * 2);
  const buf = ctx.createBuffer(1, n, RATE);
  const ch = buf.getChannelData(0);
  let e = 0;
  for (let i = 0; i < n; i++) { ch[i] = dv.getInt16(2 * i, true) / 32768; e += ch[i] * ch[i]; }
  levelOut = Math.sqrt(e / n);
  kame.outRmsMax = Math.max(kame.outRmsMax, levelOut);
  const src = ctx.createBufferSource();
  src.buffer = buf;
  src.connect(ctx.destination);
  // Keep a small jitter buffer; if we fell behind (late packets), restart just ahead of now.
  if (playTime < ctx.currentTime + 0.02) playTime = ctx.currentTime + 0.08;
  src.start(playTime);
  playTime += n / RATE;
  kame.audioOut++;
  kame.samplesOut += n;
  $("n-out").textContent = kame.audioOut;
}

function onMeta(d) {
  kame.metas++;
  $("n-meta").textContent = kame.metas;
  kame.lastMeta = d;
  const type = d.type || "";
  if (type === "transcript") {
    const text = d.text ?? d.transcript ?? "";
    const final = d.final === true || d.partial === false;
    if (final) {
      kame.transcript += (kame.transcript ? " " : "") + text;
      $("finals").textContent = kame.transcript + " ";
      $("partial").textContent = "";
    } else {
      $("partial").textContent = text;
    }
  } else if (type === "oracle") {
    // {"event": "reset"} starts a new prediction; {"event": "append", "text"} extends it.
    if (d.event === "reset") {
      if (kame.oracle) { // keep the last few predictions visible: the oracle changes as the user talks
        kame.oracleHistory.unshift(kame.oracle);
        kame.oracleHistory.length = Math.min(kame.oracleHistory.length, 3);
        $("oracle-history").replaceChildren(...kame.oracleHistory.map((t) => {
          const li = document.createElement("li");
          li.textContent = t;
          return li;
        }));
      }
      if (!d.bare) kame.oracleResets++; // (a bare reset only stops the queued tokens: no prediction)
      kame.oracle = "";
    }
    if (d.text) kame.oracle += d.text;
    $("oracle").textContent = kame.oracle || "—";
    $("oracle-count").textContent = kame.oracleResets + " predictions";
  } else if (type === "stats") {
    // the input the server and the agent dropped (a total): also in the server's own stats and the
    // cascade's, which have no frames and so leave the front-end line (and its step_time fallback) alone
    if (typeof d.dropped_input_s === "number") renderInputDropped(d.dropped_input_s);
    if (d.frames !== undefined) {
      kame.stats = d;
      renderStats(d);
    }
  } else if (type === "backend") {
    log("back-end " + d.component + " " + d.status + (d.error ? ": " + d.error : ""), d.status === "up" ? "" : "err");
  } else if (type === "vad") {
    $("you").className = "panel" + (d.event === "start" || d.event === "speech_start" ? " speaking" : "");
  } else if (type === "agent_turn" || type === "turn" || type === "barge_in") {
    log(type + " " + JSON.stringify(d).slice(0, 160));
  } else if (type === "metric") {
    if (!shownMetric(d)) return;
    kame.metrics[d.name] = d.value;
    if (!SHOWN_ELSEWHERE.has(d.name)) renderMetrics();
    else if (d.name === "step_time" && !kame.stats) $("frames").textContent = "step " + (1000 * d.value).toFixed(0) + " ms of the 80 ms budget";
  } else if (type === "info") {
    if ("audio_out" in d) { // the server's own info (first): limits of this connection
      log("session " + d.session + ": audio " + d.audio_out + " at " + d.sample_rate + " Hz, " + limits(d));
    } else {
      renderComponents(d);
    }
  } else if (type === "dropped") {
    kame.dropped = d.count;
    $("n-drop").textContent = d.count;
  } else {
    log("meta " + JSON.stringify(d).slice(0, 200));
  }
}

// The server's info line on how a session ends by itself: idle timeout (0: never), session limit.
function limits(d) {
  const idle = d.idle_timeout_s > 0 ? "idle timeout " + d.idle_timeout_s + " s" +
    (d.idle_audio_share ? " (under " + 100 * d.idle_audio_share + " % of it in audio)" : "") : "no idle timeout";
  return idle + (d.max_session_s > 0 ? ", sessions end after " + d.max_session_s + " s" : "");
}

// Whether the page shows a "metric": oracle_lag comes twice per prediction (labels.stage "emitted"
// when the back-end has its first token, then "fed" when that token went into a front-end step):
// only the fed one, what the tooltip says (one without a stage, from another server, is shown).
function shownMetric(d) {
  return d.name !== "oracle_lag" || !d.labels || d.labels.stage === undefined || d.labels.stage === "fed";
}

// Metrics measured in seconds (kame.runtime.metrics); others are plain numbers. The newest value
// of each is shown, with what it measures as a tooltip.
const SECONDS = new Set(["stt_partial_latency", "stt_final_latency", "llm_ttft", "oracle_lag", "step_time",
  "first_response_latency", "content_latency", "missed_deadline", "tts_first_chunk", "reply_stall"]);
const SHOWN_ELSEWHERE = new Set(["step_time", "missed_deadline", "oracle_restart"]); // stats line / oracle panel
const EXPLAIN = {
  first_response_latency: "your end of speech -> the agent's first audible frame (0 ms: it was already talking)",
  oracle_lag: "your last transcribed word -> the first token of the back-end's new prediction fed to the front-end",
  llm_ttft: "back-end LLM: time to its first token",
  llm_tokens_per_s: "back-end LLM: generation speed (tokens per second)",
  stt_partial_latency: "end of a word -> its partial transcript",
  stt_final_latency: "your end of speech -> the final transcript",
  content_latency: "your end of speech -> the first audible word of the answer (a cascade: its first audible frame)",
  tts_first_chunk: "back-end TTS: time from its request to its first audio chunk",
  reply_stall: "back-end LLM/TTS: a reply it ended by stalling: the wall time its stall timer ran",
};

function renderMetrics() {
  const body = $("metrics").tBodies[0];
  const shown = Object.entries(kame.metrics).filter(([k]) => !SHOWN_ELSEWHERE.has(k)).sort();
  body.replaceChildren(...shown.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.title = EXPLAIN[k] || k;
    const name = document.createElement("td"), val = document.createElement("td");
    name.textContent = k.replace(/_/g, " ");
    val.className = "v";
    val.textContent = SECONDS.has(k) ? (1000 * v).toFixed(0) + " ms" : Number.isInteger(+v) ? String(v) : (+v).toFixed(1);
    tr.append(name, val);
    return tr;
  }));
}

function renderInputDropped(s) {
  kame.inputDropped = Math.max(kame.inputDropped, s);
  $("in-drop").textContent = kame.inputDropped.toFixed(1);
  $("in-drop").className = kame.inputDropped > 0 ? "warn" : "";
  $("in-drop").title = "seconds of your audio the server dropped: it came faster than real time (the network held " +
    "it back, then sent it at once) or the agent ran slower than real time";
}

function renderStats(d) {
  const ratio = d.frames ? d.missed_deadlines / d.frames : 0;
  let s = "front-end: " + d.frames + " frames · missed deadlines " + d.missed_deadlines + " (" +
    (100 * ratio).toFixed(0) + " %)";
  if (d.step_time_p50_s !== undefined) s += " · step " + (1000 * d.step_time_p50_s).toFixed(0) + " ms of the 80 ms budget";
  if (ratio > 0.05) s += " — this machine is not keeping real time: audio will stutter";
  $("frames").textContent = s;
  $("frames").className = ratio > 0.05 ? "warn" : "muted";
}

function renderComponents(d) {
  kame.components = d;
  const parts = [];
  if (d.agent) parts.push("agent " + d.agent);
  if (d.mode) parts.push("mode " + d.mode);
  if (d.frontend) parts.push("front-end " + d.frontend + (d.frontend_random ? " (random weights)" : ""));
  for (const k of ["codec", "stt", "llm", "tts"]) if (d[k]) parts.push(k.toUpperCase().replace("CODEC", "codec") + " " + d[k]);
  $("components").textContent = parts.join(" · ") || "agent: " + JSON.stringify(d).slice(0, 160);
  const note = d.frontend_random ? (d.frontend_note ||
    "random-weight front-end: its speech and text are babble, not answers; the pipeline and timing are real") : "";
  $("banner").hidden = !note;
  $("banner").textContent = note ? "Note: " + note + "." : "";
}

function onMessage(ev) {
  const bytes = new Uint8Array(ev.data);
  if (!bytes.length) return;
  const payload = bytes.subarray(1);
  switch (bytes[0]) {
    case KIND.HANDSHAKE: {
      const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      kame.handshake = payload.length >= 8 ? { protocol: dv.getUint32(0, true), model: dv.getUint32(4, true) } : { protocol: 0, model: 0 };
      setStatus("live", "live");
      log("handshake: protocol " + kame.handshake.protocol + ", model " + kame.handshake.model);
      break;
    }
    case KIND.PCM: play(payload); break;
    case KIND.AUDIO: log("unexpected Opus audio (page asked for PCM)", "err"); break;
    case KIND.TEXT: {
      const t = new TextDecoder().decode(payload);
      kame.texts++;
      kame.agentText += t;
      const box = $("agent-text");
      box.textContent = kame.agentText.slice(-600);
      box.scrollTop = box.scrollHeight; // follow the newest words
      break;
    }
    case KIND.METADATA: {
      try { onMeta(JSON.parse(new TextDecoder().decode(payload))); } catch (e) { log("bad metadata: " + e, "err"); }
      break;
    }
    case KIND.ERROR: {
      const t = new TextDecoder().decode(payload);
      let e;
      try { e = JSON.parse(t); } catch (_) { e = { code: "error", message: t }; }
      kame.errors.push(e);
      log("error " + e.code + ": " + e.message, "err");
      break;
    }
    case KIND.PING: break;
    default: log("unknown message kind " + bytes[0]);
  }
}

function drawLevel(s) {
  for (const [id, v, color] of [["level", level, "#3a7bd5"], ["level-out", levelOut, "#e67e22"]]) {
    const c = $(id), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    g.fillStyle = color;
    g.fillRect(0, 0, Math.min(1, v * 4) * c.width, c.height);
  }
  levelOut *= 0.9; // decays when no agent audio arrives
  if (s === sess) requestAnimationFrame(() => drawLevel(s)); // (until this session ends)
}

// The panels and window.kame as before any session (start() calls it: nothing carries over).
function resetPanels() {
  Object.assign(kame, fresh());
  for (const id of ["finals", "partial", "agent-text", "frames"]) $(id).textContent = "";
  $("oracle").textContent = "—";
  $("oracle-count").textContent = "0 predictions";
  $("oracle-history").replaceChildren();
  for (const id of ["n-in", "n-out", "n-meta", "n-drop"]) $(id).textContent = "0";
  $("in-drop").textContent = "0.0";
  $("in-drop").className = "";
  $("frames").className = "muted";
  $("you").className = "panel";
  const row = document.createElement("tr"), td = document.createElement("td");
  td.className = "muted";
  td.textContent = "(appears when you speak and the agent answers)";
  row.append(td);
  $("metrics").tBodies[0].replaceChildren(row);
  $("components").textContent = "connecting…";
  $("banner").hidden = true;
  $("banner").textContent = "";
}

// Before asking for the microphone, and after a refused upgrade: is the server reachable, full,
// or is the token missing or wrong? (A refused WebSocket upgrade does not tell the page its HTTP
// status: 401 wrong token, 429 too many sessions from this address, 503 full or loading.) Each
// request gives up after 5 s (a stalled proxy); a body that is not JSON is a proxy's error page.
const CHECK_MS = 5000;
async function serverProblem() {
  let r, h;
  const unreachable = (e) => "the kame server is not reachable (" +
    (e && e.name === "TimeoutError" ? "no answer within " + CHECK_MS / 1000 + " s" : e.message) + ")";
  try {
    r = await fetch("api/health", { cache: "no-store", signal: AbortSignal.timeout(CHECK_MS) });
  } catch (e) {
    return unreachable(e);
  }
  try {
    h = await r.json();
  } catch (e) {
    return e && e.name === "TimeoutError" ? unreachable(e) : "the kame server is not reachable: /api/health " +
      "answered with an error page (HTTP " + r.status + "; a proxy before the server?)";
  }
  if (h.status === "loading") return "the server is still loading its agent; try again in a few seconds";
  if (h.status === "failed") return "the server's agent has failed (" + (h.error || "see the server's log") + ")";
  const token = new URLSearchParams(location.search).get("token");
  if (h.auth && !token)
    return "this server needs a token: open this page as …/?token=YOUR_TOKEN (percent-encode + / = in it)";
  if (h.auth) { // /api/metrics answers 401 for a wrong token, as /api/chat does (HEAD: not its text)
    try {
      const m = await fetch("api/metrics?" + new URLSearchParams({ token }),
        { method: "HEAD", cache: "no-store", signal: AbortSignal.timeout(CHECK_MS) });
      // (the server's own 401 says "Bearer"; a proxy's may not: then it is not the token's fault)
      if (m.status === 401 && /^Bearer\b/i.test(m.headers.get("WWW-Authenticate") || ""))
        return "the token is wrong (in ?token=, percent-encode + / =)";
      if (m.status === 401) return "the server (or a proxy before it) refused /api/metrics (HTTP 401)";
    } catch (e) { /* (not reachable: the next start says so) */ }
  }
  if (h.max_sessions_per_client && h.client_sessions >= h.max_sessions_per_client)
    return "too many sessions from your address (server.max_sessions_per_client: " + h.max_sessions_per_client +
      "); close one first";
  if (h.max_sessions && h.sessions >= h.max_sessions)
    return "the server is full (" + h.sessions + " of " + h.max_sessions + " sessions in use); try again later";
  return null;
}

function problemStatus(problem) {
  return problem.startsWith("the server is full") ? "server full" :
    problem.includes("still loading") ? "server loading" : "cannot connect";
}

// What a failed getUserMedia / audio set-up means, in words.
function micProblem(e) {
  const insecure = window.isSecureContext ? "" : " (the page needs localhost or HTTPS for the microphone)";
  if ((!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) && !window.isSecureContext)
    return "no microphone on a page over plain http: open it on localhost or over HTTPS";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
    return "this browser gives the page no microphone (navigator.mediaDevices is missing)";
  if (e && e.name === "NotFoundError") return "no microphone found (" + e.message + ")";
  if (e && e.name === "NotAllowedError") return "microphone permission denied (" + e.message + ")" + insecure;
  return "microphone/audio error: " + e + insecure;
}

function setButton(text, cls, disabled) {
  $("connect").textContent = text;
  $("connect").className = cls || "";
  $("connect").disabled = !!disabled;
}

// Resolves once the stopped sessions' sockets have closed, or after ``ms``.
function previousClosed(ms) {
  const open = [...closing].filter((w) => w.readyState !== WebSocket.CLOSED);
  if (!open.length) return Promise.resolve();
  return Promise.race([
    Promise.all(open.map((w) => new Promise((done) => w.addEventListener("close", done, { once: true })))),
    new Promise((done) => setTimeout(done, ms)),
  ]);
}

async function start() {
  if (sess) return; // one session at a time (the button is "Cancel", then "Stop", while one is on)
  const s = (sess = { ws: null, ctx: null, stream: null, node: null, stopped: false });
  resetPanels();
  setStatus("starting…");
  setButton("Cancel", "stop"); // (enabled: a permission prompt left unanswered, a slow server)
  await previousClosed(5000); // (the last session's place is free once its socket has closed)
  if (s !== sess) return; // cancelled meanwhile
  const problem = await serverProblem();
  if (s !== sess) return; // cancelled meanwhile
  if (problem) {
    end(s);
    setStatus(problemStatus(problem), "error");
    log(problem, "err");
    return;
  }
  try {
    if (!navigator.mediaDevices) throw new Error("no navigator.mediaDevices");
    setStatus("waiting for the microphone…");
    s.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    if (s !== sess) return release(s);
    let mic;
    try { // a 24 kHz context: the browser resamples the microphone for us
      if (new URLSearchParams(location.search).has("resample")) throw new Error("forced"); // test hook
      s.ctx = new AudioContext({ sampleRate: RATE });
      mic = s.ctx.createMediaStreamSource(s.stream);
    } catch (e) { // some browsers refuse a microphone in a context at another rate
      if (s.ctx) s.ctx.close();
      s.ctx = new AudioContext();
      mic = s.ctx.createMediaStreamSource(s.stream);
      log("audio context at " + s.ctx.sampleRate + " Hz; resampling to 24 kHz in the worklet");
    }
    await s.ctx.resume();
    if (s !== sess) return release(s);
    kame.contextRate = s.ctx.sampleRate;
    if (s.ctx.audioWorklet) {
      await s.ctx.audioWorklet.addModule("pcm-worklet.js");
      if (s !== sess) return release(s);
      s.node = new AudioWorkletNode(s.ctx, "pcm-capture", { processorOptions: { ratio: s.ctx.sampleRate / RATE } });
      s.node.port.onmessage = (e) => sendPcm(s, e.data);
    } else if (s.ctx.sampleRate === RATE) { // older browsers: ScriptProcessor at 24 kHz
      s.node = s.ctx.createScriptProcessor(2048, 1, 1);
      s.node.onaudioprocess = (e) => sendPcm(s, e.inputBuffer.getChannelData(0).slice());
    } else {
      throw new Error("this browser has no AudioWorklet and no 24 kHz audio context");
    }
    mic.connect(s.node);
    const sink = s.ctx.createGain(); // keep the graph pulling without echoing the mic
    sink.gain.value = 0;
    s.node.connect(sink).connect(s.ctx.destination);
  } catch (e) {
    if (s !== sess) return release(s);
    end(s);
    setStatus(e && e.name === "NotAllowedError" ? "microphone denied" : e && e.name !== "NotFoundError" &&
      navigator.mediaDevices ? "microphone error" : "no microphone", "error");
    log(micProblem(e), "err");
    return;
  }
  ctx = s.ctx;
  setStatus("connecting…");
  try { // (a Content-Security-Policy or a blocked port throws here)
    s.ws = new WebSocket(wsUrl());
  } catch (e) {
    end(s);
    setStatus("cannot connect (" + (e && e.name || "error") + ")", "error");
    log("cannot open the WebSocket to the server: " + e, "err");
    return;
  }
  s.ws.binaryType = "arraybuffer";
  s.ws.onopen = () => {
    if (s !== sess) return;
    kame.connected = true;
    log("connected " + s.ws.url.replace(/token=[^&]*/, "token=…"));
  };
  s.ws.onmessage = (ev) => { if (s === sess) onMessage(ev); };
  s.ws.onclose = (e) => closed(s, e);
  setButton("Stop", "stop");
  drawLevel(s);
}

// A session's socket has closed: by the user (stop), the server, or a lost connection.
async function closed(s, e) {
  closing.delete(s.ws);
  if (s.stopped || s !== sess) { // the user stopped it (or a newer session has begun): nothing more to say
    if (e.code === 1000) log("closed: " + e.code + " " + (e.reason || ""));
    return;
  }
  const live = !!kame.handshake;
  kame.connected = false;
  kame.closed = { code: e.code, reason: e.reason };
  log("closed: " + e.code + " " + (e.reason || ""), e.code === 1000 ? "" : "err");
  setStatus(e.code === 1000 ? "closed" : "closed " + e.code, e.code === 1000 ? "idle" : "error");
  end(s);
  if (live && e.code === 1006) {
    log("the connection to the server was lost (server stopped or network failed)", "err");
  } else if (!live && e.code !== 1000) { // refused before the session started: ask the server why
    const problem = await serverProblem();
    log(problem || "the server refused the session (see its log)", "err");
    if (problem && !sess) setStatus(problemStatus(problem), "error");
  }
}

// Close a session's socket, microphone and audio context (whichever it has got so far).
function release(s) {
  s.stopped = true;
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) {
    s.ws.close(1000, "user stopped");
    closing.add(s.ws); // (until its close event: closed())
  }
  if (s.node && s.node.port) s.node.port.onmessage = null;
  if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
  if (s.ctx && s.ctx.state !== "closed") s.ctx.close();
}

// The session ``s`` is over: released, and the page ready for the next (if it was the current one).
function end(s) {
  release(s);
  if (s !== sess) return;
  sess = ctx = null;
  kame.handshake = null;
  playTime = 0;
  level = levelOut = 0;
  if (!kame.components) $("components").textContent = "not connected — press “Connect microphone” and talk";
  setButton("Connect microphone");
}

// The user's stop: of a live session, or of one still starting or connecting.
function stop() {
  const s = sess;
  if (!s) return;
  const connecting = s.ws && s.ws.readyState === WebSocket.CONNECTING;
  if (connecting || !s.ws) log("stopped by you before the session began");
  end(s);
  kame.connected = false;
  setStatus("stopped");
}

window.kameStart = start;
window.kameStop = stop;
// (the second click of a double click is not a stop: e.detail counts the clicks in a row)
$("connect").onclick = (e) => (e.detail > 1 ? undefined : sess ? stop() : start());
