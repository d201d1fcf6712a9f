// The live page of lae serve: submit form, scans in progress and verdicts as they arrive
// (Server-Sent Events from /api/events), per-video score timeline and evidence frames.
// Plain DOM code, no build step. Every value from the server goes in through textContent or
// setAttribute, never innerHTML: input names and errors come from whoever submitted.
"use strict";

const scans = new Map();    // video id -> scan summary (GET /api/scans, "scan" events)
const verdicts = new Map(); // video id -> latest verdict ("verdict" events, GET /api/scans/{id})
let selected = "";
let shownVerdictKey = "";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtScore(x) { return typeof x === "number" && isFinite(x) ? x.toFixed(3) : "n/a"; }

function fmtTime(s) {
  if (typeof s !== "number" || !isFinite(s) || s < 0) return "n/a";
  const m = Math.floor(s / 60);
  return m + ":" + (s - m * 60).toFixed(2).padStart(5, "0");
}

function fmtRect(r) {
  if (!r || !(r.w > 0) || !(r.h > 0)) return "none";
  return `x=${Math.round(r.x)} y=${Math.round(r.y)} w=${Math.round(r.w)} h=${Math.round(r.h)}`;
}

function label(sc) { return sc.name || sc.input || sc.video_id; }

// ---- scan list ----

function renderList() {
  const ul = $("scans");
  const items = [...scans.values()].sort((a, b) =>
    (b.submitted_at || b.updated_at || "").localeCompare(a.submitted_at || a.updated_at || "") ||
    b.video_id.localeCompare(a.video_id));
  ul.replaceChildren(...items.map((sc) => {
    const li = el("li", { "data-video": sc.video_id, "data-state": sc.state });
    if (sc.video_id === selected) li.classList.add("selected");
    const done = sc.state === "done";
    const badge = el("span", { class: "badge " + (done ? "v-" + sc.verdict : "pending") }, done ? sc.verdict : sc.stage || "pending");
    li.append(badge, el("span", { class: "name" }, label(sc)));
    let sub = done ? `score ${fmtScore(sc.score)}` : progressText(sc);
    li.append(el("span", { class: "sub" }, sub + " · " + sc.video_id));
    li.addEventListener("click", () => select(sc.video_id));
    return li;
  }));
  $("no-scans").hidden = items.length > 0;
}

function progressText(sc) {
  const pub = sc.crops_published || 0, scored = sc.crops_scored || 0;
  switch (sc.stage) {
    case "queued": return "waiting for ingest";
    case "ingesting": return `${pub} faces found, ${scored} scored`;
    case "scoring": return `${scored} of ${pub} faces scored`;
    default: return sc.stage || sc.state || "";
  }
}

function upsertScan(sc) {
  const old = scans.get(sc.video_id) || {};
  scans.set(sc.video_id, Object.assign({}, old, sc));
}

async function loadList() {
  try {
    const r = await fetch("/api/scans");
    if (!r.ok) return;
    const body = await r.json();
    for (const sc of body.scans || []) upsertScan(sc);
    renderList();
    if (selected) renderDetail();
  } catch (e) { /* the event stream's reconnect retries */ }
}

// ---- detail ----

async function select(id) {
  selected = id;
  shownVerdictKey = "";
  renderList();
  renderDetail();
  try {
    const r = await fetch("/api/scans/" + encodeURIComponent(id));
    if (!r.ok) return;
    const body = await r.json();
    if (body.verdict) verdicts.set(id, body);
    if (body.state) upsertScan(Object.assign({ video_id: id }, scans.get(id), { state: body.state, stage: body.stage || (scans.get(id) || {}).stage }));
    if (selected === id) { renderList(); renderDetail(); }
  } catch (e) { /* shown on the next event */ }
}

function renderDetail() {
  const d = $("detail");
  d.setAttribute("data-video", selected);
  $("detail-empty").hidden = !!selected;
  $("detail-body").hidden = !selected;
  if (!selected) return;
  const sc = scans.get(selected) || { video_id: selected, state: "pending", stage: "queued" };
  const v = verdicts.get(selected);
  const final = !!(v && v.final);
  const badge = $("d-verdict");
  badge.className = "badge " + (final ? "v-" + v.verdict : "pending");
  badge.textContent = final ? v.verdict : (sc.stage || "pending");
  badge.setAttribute("data-verdict", final ? v.verdict : "");
  $("d-input").textContent = sc.name || (v && v.input) || sc.input || "";
  const meta = [];
  if (v) {
    meta.push(`score ${fmtScore(v.score)}${final ? "" : " (so far)"}`, `threshold ${fmtScore(v.threshold)}`, `rule ${v.rule}`);
    if (v.model) meta.push(`model ${v.model}${v.model_version ? " " + v.model_version : ""}`);
    meta.push(`revision ${v.revision}`);
  }
  meta.push(selected);
  $("d-meta").textContent = meta.join(" · ");

  const prog = $("d-progress");
  if (final) {
    prog.textContent = `${v.frames_sampled} frames sampled, ${v.frames_with_face} with a face, ${v.crops_scored} faces scored, ${(v.tracks || []).length} track(s)` +
      (v.faces_too_small ? `, ${v.faces_too_small} faces too small to judge` : "");
  } else {
    prog.textContent = progressText(sc);
    const pub = sc.crops_published || 0, scored = sc.crops_scored || 0;
    if (pub > 0) {
      const bar = el("div", { class: "bar" });
      const fill = el("div");
      fill.style.width = Math.min(100, Math.round(100 * scored / pub)) + "%";
      bar.append(fill);
      prog.append(bar);
    }
  }
  const err = (v && v.error) || sc.error || "";
  $("d-error").hidden = !err;
  $("d-error").textContent = err;

  // Timeline and evidence change only with a new verdict: keep loaded images in place.
  const key = v ? `${selected}/${v.revision}/${v.final}/${v.created_at}` : selected + "/none";
  if (key === shownVerdictKey) return;
  shownVerdictKey = key;
  renderTimeline(v);
  renderEvidence(v);
  const rep = $("d-report");
  rep.hidden = !v;
  rep.href = "/api/scans/" + encodeURIComponent(selected) + "/report" + (v ? "?revision=" + v.revision : "");
}

const SVGNS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, val] of Object.entries(attrs || {})) e.setAttribute(k, String(val));
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderTimeline(v) {
  const box = $("d-timeline");
  const pts = (v && v.timeline) || [];
  if (!pts.length) {
    box.replaceChildren(el("p", { class: "muted" }, v ? "No sampled frame had a scored face." : "Waiting for scores…"));
    return;
  }
  const W = 800, H = 220, L = 40, R = W - 12, T = 10, B = H - 28;
  let t0 = Infinity, t1 = -Infinity;
  for (const p of pts) if (isFinite(p.pts_seconds)) { t0 = Math.min(t0, p.pts_seconds); t1 = Math.max(t1, p.pts_seconds); }
  if (!isFinite(t0)) { t0 = 0; t1 = 1; }
  if (t0 > 0 && t0 < t1 - t0) t0 = 0;
  if (t1 - t0 < 1e-6) t1 = t0 + 1;
  const x = (t) => L + ((isFinite(t) ? t : t0) - t0) / (t1 - t0) * (R - L);
  const y = (s) => B - Math.max(0, Math.min(1, isFinite(s) ? s : 0)) * (B - T);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", id: "timeline-svg", role: "img", "aria-label": "per-frame fake score" });
  for (const g of [0, 0.25, 0.5, 0.75, 1]) {
    s.append(svg("line", { class: "grid", x1: L, x2: R, y1: y(g), y2: y(g) }),
      svg("text", { x: L - 5, y: y(g) + 4, "text-anchor": "end" }, g.toFixed(2)));
  }
  const step = niceStep((t1 - t0) / 6);
  for (let t = Math.ceil(t0 / step) * step, n = 0; t <= t1 + step / 1e6 && n < 20; t += step, n++) {
    s.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: T, y2: B }),
      svg("text", { x: x(t), y: B + 16, "text-anchor": "middle" }, +t.toFixed(3) + "s"));
  }
  const thr = svg("line", { class: "thr", x1: L, x2: R, y1: y(v.threshold), y2: y(v.threshold) });
  thr.append(svg("title", {}, "threshold " + fmtScore(v.threshold)));
  s.append(thr, svg("text", { x: R, y: y(v.threshold) - 4, "text-anchor": "end", fill: "#c62828" }, "threshold " + fmtScore(v.threshold)));
  s.append(svg("polyline", { class: "line", points: pts.map((p) => x(p.pts_seconds).toFixed(1) + "," + y(p.score).toFixed(1)).join(" ") }));
  for (const p of pts) {
    const c = svg("circle", { class: "pt" + (p.score >= v.threshold ? " above" : ""), cx: x(p.pts_seconds).toFixed(1), cy: y(p.score).toFixed(1), r: 2.5 });
    c.append(svg("title", {}, `frame ${p.frame_index} at ${fmtTime(p.pts_seconds)}: score ${fmtScore(p.score)}`));
    s.append(c);
  }
  box.replaceChildren(s);
}

function niceStep(raw) {
  if (!(raw > 0) || !isFinite(raw)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function renderEvidence(v) {
  const box = $("d-evidence");
  const ev = (v && v.evidence) || [];
  if (!ev.length) {
    const why = !v || !v.final ? "Evidence frames appear with the final verdict." :
      (v.verdict === "unknown" && v.faces_too_small && !v.crops_scored) ? `Faces too small to judge (${v.faces_too_small}): nothing to localize.` :
      (v.verdict === "unknown" || v.verdict === "error") ? `Nothing to localize for a verdict "${v.verdict}".` : "No evidence frames.";
    box.replaceChildren(el("p", { class: "muted" }, why));
    return;
  }
  box.replaceChildren(...ev.map((e, i) => {
    const fig = el("figure", { "data-n": i });
    if (e.image) {
      fig.append(el("img", {
        class: "evidence-img", alt: `evidence ${i + 1}: frame ${e.frame_index}`,
        src: `/api/scans/${encodeURIComponent(v.video_id)}/evidence/${i}?revision=${v.revision}`,
      }));
    } else {
      fig.append(el("p", { class: "muted" }, "image not available"));
    }
    const cap = el("figcaption");
    cap.append(el("b", {}, `#${i + 1} score ${fmtScore(e.score)}`), ` at ${fmtTime(e.pts_seconds)} (frame ${e.frame_index}), track ${e.track_id}`,
      el("br"), `face box ${fmtRect(e.face_box)}`, el("br"), `hot region ${fmtRect(e.hot_region)}`);
    fig.append(cap);
    return fig;
  }));
}

// ---- submit ----

async function submitScan(ev) {
  if (ev) ev.preventDefault();
  const status = $("submit-status");
  const url = $("url").value.trim();
  const file = $("file").files[0];
  const fps = $("fps").value.trim();
  if (!url && !file) {
    status.className = "status bad";
    status.textContent = "Give a URL or choose a file.";
    return;
  }
  let init;
  if (file) {
    const fd = new FormData();
    if (fps) fd.append("sample_fps", fps);
    fd.append("file", file);
    init = { method: "POST", body: fd };
  } else {
    const req = { url };
    if (fps) req.sample_fps = Number(fps);
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req) };
  }
  $("submit").disabled = true;
  status.className = "status";
  status.textContent = file ? "Uploading…" : "Submitting…";
  try {
    const r = await fetch("/api/scans", init);
    const body = await r.json().catch(() => ({}));
    if (r.status !== 202) {
      status.className = "status bad";
      status.textContent = body.error || `submission failed (${r.status})`;
      return;
    }
    status.textContent = "Queued " + body.video_id;
    status.setAttribute("data-video", body.video_id);
    upsertScan({ video_id: body.video_id, input: file ? file.name : url, name: file ? file.name : "", state: "pending", stage: "queued",
      submitted_at: new Date().toISOString() });
    $("url").value = "";
    $("file").value = "";
    select(body.video_id);
  } catch (e) {
    status.className = "status bad";
    status.textContent = "submission failed: " + e;
  } finally {
    $("submit").disabled = false;
  }
}

// ---- events ----

function connect() {
  const conn = $("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => {
    conn.textContent = "live";
    conn.setAttribute("data-state", "live");
    loadList(); // catch up with what happened while disconnected
  });
  es.addEventListener("error", () => {
    conn.textContent = "reconnecting…";
    conn.setAttribute("data-state", "lost");
  });
  es.addEventListener("scan", (m) => {
    const sc = JSON.parse(m.data);
    upsertScan(sc);
    renderList();
    if (sc.video_id === selected) renderDetail();
  });
  es.addEventListener("verdict", (m) => {
    const v = JSON.parse(m.data);
    const old = verdicts.get(v.video_id);
    // A rolling update never replaces a final verdict of the same or a later revision.
    if (old && old.final && !v.final && old.revision >= v.revision) return;
    verdicts.set(v.video_id, v);
    if (v.video_id === selected) renderDetail();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("submit-form").addEventListener("submit", submitScan);
  connect();
  const params = new URLSearchParams(location.search);
  if (params.get("submit")) {
    $("url").value = params.get("submit");
    submitScan();
  } else if (params.get("scan")) {
    select(params.get("scan"));
  }
});
