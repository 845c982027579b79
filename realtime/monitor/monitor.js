// m2e monitor: follow /events (server-sent events): "message" = one output step (values on the 0-1 scale OSC
// sends), "status" = the heartbeat (state, counters) once a second, also while nothing else is sent.
"use strict";
(function () {
  const SIZE = 420, PAD = 10, SPAN = SIZE - 2 * PAD, TRAIL = 80;
  const STATES = { "running": "live", "warming up": "warming up", "paused": "paused", "no input": "no input",
                   "model error": "model error", "stopped": "stopped" };
  const $ = (id) => document.getElementById(id);
  const trail = [];
  let steps = 0, lastEvent = 0, modelUpdates = 0;  // output steps drawn; windows the model answered

  // 0-1 -> SVG coordinates (arousal grows upwards).
  const x = (v) => PAD + Math.min(1, Math.max(0, v)) * SPAN;
  const y = (a) => PAD + (1 - Math.min(1, Math.max(0, a))) * SPAN;

  function setState(state) {
    document.body.dataset.state = state;
    $("state").textContent = state;
  }

  function render(s) {
    const px = x(s.valence), py = y(s.arousal);
    $("point").setAttribute("cx", px.toFixed(1));
    $("point").setAttribute("cy", py.toFixed(1));
    trail.push(px.toFixed(1) + "," + py.toFixed(1));
    if (trail.length > TRAIL) trail.shift();
    $("trail").setAttribute("points", trail.join(" "));
    $("valence").textContent = s.valence.toFixed(2);
    $("arousal").textContent = s.arousal.toFixed(2);
    $("quadrant").textContent = "Q" + s.quadrant;
    for (let q = 1; q <= 4; q++) $("q" + q).classList.toggle("on", q === s.quadrant);
    $("moods").textContent = s.moods.join(", ") || "\u2013";
    const table = $("probs");
    table.replaceChildren(...s.top.map(([tag, p]) => {  // DOM nodes, not innerHTML: tag names are data
      const tr = document.createElement("tr");
      const name = document.createElement("td"), cell = document.createElement("td");
      const value = document.createElement("td"), bar = document.createElement("div");
      name.textContent = tag;
      cell.className = "barcell";
      bar.className = "bar";
      bar.style.width = Math.round(p * 100) + "%";
      cell.appendChild(bar);
      value.textContent = p.toFixed(2);
      tr.append(name, cell, value);
      return tr;
    }));
    const f = s.features || {};
    if (f.level_db !== undefined) {
      $("level").textContent = f.level_db.toFixed(1);
      $("peak").textContent = f.peak_db.toFixed(1);
      $("level-bar").style.width = Math.round(f.level * 100) + "%";
      $("tempo").textContent = f.tempo ? f.tempo.toFixed(0) + " BPM" : "\u2013";
    }
    $("status").textContent = `${s.model} \u00b7 t=${s.stream_time.toFixed(1)} s \u00b7 latency ` +
      `${s.latency_ms.toFixed(0)} ms \u00b7 ${modelUpdates} model updates \u00b7 ${steps} steps`;
    document.body.dataset.steps = String(steps);
    document.body.dataset.modelUpdates = String(modelUpdates);
  }

  function renderStatus(st) {
    setState(STATES[st.state] || st.state);
    $("overflows").textContent = String(st.overflows);
    $("xruns").textContent = String(st.xruns);
    $("skipped").textContent = String(st.skipped);
    modelUpdates = st.updates;
    if (st.source) $("source").textContent = st.source;
  }

  const source = new EventSource("events");
  source.onmessage = (ev) => {
    let s;
    try { s = JSON.parse(ev.data); } catch (e) { return; }
    steps += 1;
    render(s);
  };
  source.addEventListener("status", (ev) => {
    let st;
    try { st = JSON.parse(ev.data); } catch (e) { return; }
    lastEvent = Date.now();
    renderStatus(st);
  });
  source.onerror = () => setState("reconnecting");
  // The heartbeat comes once a second: silence for 3 s means the sidecar is gone.
  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > 3000) setState("stale");
  }, 1000);
})();
