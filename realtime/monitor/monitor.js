// m2e monitor: follow /events (server-sent events) and draw the valence/arousal point on the Russell plane.
"use strict";
(function () {
  const SIZE = 420, PAD = 10, SPAN = SIZE - 2 * PAD, TRAIL = 80;
  const $ = (id) => document.getElementById(id);
  const trail = [];
  let updates = 0, lastEvent = 0;

  // 1-9 scale -> SVG coordinates (arousal grows upwards).
  const x = (v) => PAD + (Math.min(9, Math.max(1, v)) - 1) / 8 * SPAN;
  const y = (a) => PAD + (1 - (Math.min(9, Math.max(1, a)) - 1) / 8) * SPAN;

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
    $("moods").textContent = s.moods.join(", ") || "\u2013";
    const table = $("probs");
    table.replaceChildren(...s.top.map(([tag, p]) => {  // DOM nodes, not innerHTML: tag names are data
      const tr = document.createElement("tr");
      const name = document.createElement("td"), cell = document.createElement("td");
      const value = document.createElement("td"), bar = document.createElement("div");
      name.textContent = tag;
      bar.className = "bar";
      bar.style.width = Math.round(p * 120) + "px";
      cell.appendChild(bar);
      value.textContent = p.toFixed(2);
      tr.append(name, cell, value);
      return tr;
    }));
    $("status").textContent = `${s.model} \u00b7 t=${s.stream_time.toFixed(1)} s \u00b7 latency ` +
      `${s.latency_ms.toFixed(0)} ms \u00b7 ${updates} updates`;
    $("status").className = "";
    document.body.dataset.updates = String(updates);
    document.body.dataset.state = "live";
  }

  const source = new EventSource("events");
  source.onmessage = (ev) => {
    let s;
    try { s = JSON.parse(ev.data); } catch (e) { return; }
    updates += 1;
    lastEvent = Date.now();
    render(s);
  };
  source.onerror = () => { document.body.dataset.state = "reconnecting"; };
  // Flag a silent stream (sidecar stopped or paused without output) after 3 s.
  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > 3000) {
      $("status").className = "stale";
      document.body.dataset.state = "stale";
    }
  }, 1000);
})();
