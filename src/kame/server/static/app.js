// kame browser client: microphone -> 0x08 PCM -> /api/chat?pcm=1 -> 0x08 PCM playback, plus
// live transcript / oracle / latency from 0x04 metadata. Plain JS, no build step.
// Protocol: docs/protocol.md. Test hooks: window.kame (counters), window.kameStart(),
// ?resample (use the browser's native rate + resampling in the worklet).
"use strict";

const KIND = { HANDSHAKE: 0, AUDIO: 1, TEXT: 2, CONTROL: 3, METADATA: 4, ERROR: 5, PING: 6, PCM: 8 };
const RATE = 24000;
const $ = (id) => document.getElementById(id);

const kame = (window.kame = {
  connected: false, handshake: null, audioIn: 0, audioOut: 0, samplesOut: 0, texts: 0,
  metas: 0, errors: [], oracleResets: 0, transcript: "", oracle: "", agentText: "",
  metrics: {}, dropped: 0, closed: null, outRmsMax: 0, stats: null,
});

let ws = null, ctx = null, stream = null, node = null, playTime = 0, level = 0;

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

function wsUrl() {
  const q = new URLSearchParams(location.search);
  const p = new URLSearchParams({ pcm: "1" });
  if (q.get("token")) p.set("token", q.get("token"));
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/chat?" + p;
}

function sendPcm(f32) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !kame.handshake) return;
  const msg = new DataView(new ArrayBuffer(1 + 2 * f32.length));
  msg.setUint8(0, KIND.PCM);
  let e = 0;
  for (let i = 0; i < f32.length; i++) {
    const s = Math.max(-1, Math.min(1, f32[i]));
    e += s * s;
    msg.setInt16(1 + 2 * i, s * 32767, true);
  }
  level = Math.sqrt(e / f32.length);
  ws.send(msg.buffer);
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
  kame.outRmsMax = Math.max(kame.outRmsMax, Math.sqrt(e / n));
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
    if (d.event === "reset") { kame.oracleResets++; kame.oracle = ""; }
    if (d.text) kame.oracle += d.text;
    $("oracle").textContent = kame.oracle || "—";
    $("oracle-count").textContent = kame.oracleResets + " predictions";
  } else if (type === "stats") {
    kame.stats = d;
    if (d.missed_deadlines !== undefined) $("n-miss").textContent = d.missed_deadlines;
  } else if (type === "backend") {
    log("back-end " + d.component + " " + d.status + (d.error ? ": " + d.error : ""), d.status === "up" ? "" : "err");
  } else if (type === "vad") {
    $("you").className = "panel" + (d.event === "start" || d.event === "speech_start" ? " speaking" : "");
  } else if (type === "agent_turn" || type === "turn" || type === "barge_in") {
    log(type + " " + JSON.stringify(d).slice(0, 160));
  } else if (type === "metric") {
    kame.metrics[d.name] = d.value;
    renderMetrics();
  } else if (type === "info") {
    const { type: _t, session, ...rest } = d;
    log("info " + (session || "") + " " + JSON.stringify(rest).slice(0, 200));
  } else if (type === "dropped") {
    kame.dropped = d.count;
    $("n-drop").textContent = d.count;
  } else {
    log("meta " + JSON.stringify(d).slice(0, 200));
  }
}

// Metrics measured in seconds (kame.runtime.metrics); others are plain numbers.
const SECONDS = new Set(["stt_partial_latency", "stt_final_latency", "llm_ttft", "oracle_lag", "step_time",
  "first_response_latency", "content_latency", "missed_deadline", "tts_first_chunk"]);

function renderMetrics() {
  const rows = Object.entries(kame.metrics).sort().map(([k, v]) => {
    const s = !SECONDS.has(k) ? (+v).toPrecision(3) : k === "missed_deadline" ? (1000 * v).toFixed(0) + " ms late"
      : (1000 * v).toFixed(0) + " ms";
    return "<tr><td>" + k.replace(/_/g, " ") + "</td><td class=v>" + s + "</td></tr>";
  });
  $("metrics").tBodies[0].innerHTML = rows.join("");
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
      $("agent-text").textContent = kame.agentText.slice(-600);
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

function drawLevel() {
  const c = $("level"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = "#3a7bd5";
  g.fillRect(0, 0, Math.min(1, level * 4) * c.width, c.height);
  if (ctx) requestAnimationFrame(drawLevel);
}

async function start() {
  if (ws) return;
  setStatus("starting…");
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    let mic;
    try { // a 24 kHz context: the browser resamples the microphone for us
      if (new URLSearchParams(location.search).has("resample")) throw new Error("forced"); // test hook
      ctx = new AudioContext({ sampleRate: RATE });
      mic = ctx.createMediaStreamSource(stream);
    } catch (e) { // some browsers refuse a microphone in a context at another rate
      if (ctx) ctx.close();
      ctx = new AudioContext();
      mic = ctx.createMediaStreamSource(stream);
      log("audio context at " + ctx.sampleRate + " Hz; resampling to 24 kHz in the worklet");
    }
    await ctx.resume();
    kame.contextRate = ctx.sampleRate;
    if (ctx.audioWorklet) {
      await ctx.audioWorklet.addModule("pcm-worklet.js");
      node = new AudioWorkletNode(ctx, "pcm-capture", { processorOptions: { ratio: ctx.sampleRate / RATE } });
      node.port.onmessage = (e) => sendPcm(e.data);
    } else if (ctx.sampleRate === RATE) { // older browsers: ScriptProcessor at 24 kHz
      node = ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (e) => sendPcm(e.inputBuffer.getChannelData(0).slice());
    } else {
      throw new Error("this browser has no AudioWorklet and no 24 kHz audio context");
    }
    mic.connect(node);
    const sink = ctx.createGain(); // keep the graph pulling without echoing the mic
    sink.gain.value = 0;
    node.connect(sink).connect(ctx.destination);
  } catch (e) {
    setStatus("no microphone", "error");
    log("microphone/audio error: " + e + " (needs localhost or HTTPS)", "err");
    stop();
    return;
  }
  ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { kame.connected = true; log("connected " + ws.url.replace(/token=[^&]*/, "token=…")); };
  ws.onmessage = onMessage;
  ws.onclose = (e) => {
    kame.connected = false;
    kame.closed = { code: e.code, reason: e.reason };
    log("closed: " + e.code + " " + (e.reason || ""), e.code === 1000 ? "" : "err");
    setStatus(e.code === 1000 ? "closed" : "closed " + e.code, e.code === 1000 ? "idle" : "error");
    stop();
  };
  ws.onerror = () => log("WebSocket error (server down, full (503) or token (401)?)", "err");
  $("connect").textContent = "Stop";
  $("connect").className = "stop";
  drawLevel();
}

function stop() {
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "user stopped");
  ws = null;
  kame.handshake = null;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  stream = ctx = node = null;
  playTime = 0;
  $("connect").textContent = "Connect microphone";
  $("connect").className = "";
}

window.kameStart = start;
window.kameStop = stop;
$("connect").onclick = () => (ws ? stop() : start());
