// The live page of lae serve: submit form, scans in progress and verdicts as they arrive
// (Server-Sent Events from /api/events), per-video score timeline and evidence frames.
// Plain DOM code, no build step. Every value from the server goes in through textContent or
// setAttribute, never innerHTML: input names and errors come from whoever submitted.
"use strict";

const scans = new Map();    // video id -> scan summary (GET /api/scans, "scan" events)
const verdicts = new Map(); // video id -> latest verdict ("verdict" events, GET /api/scans/{id})
let selected = "";
let shownVerdictKey = "";
let refetched = "";         // the scan whose final verdict was last fetched after a missed event

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

// matches reports whether a scan matches every word of the filter (case-insensitive, over
// its name, input, id, verdict and state).
function matches(sc, words) {
  if (!words.length) return true;
  const st = sc.state === "done" && sc.verdict ? status(scanVerdict(sc)).label : "";
  const hay = [sc.name, sc.input, sc.video_id, sc.reference, sc.verdict, sc.stage, sc.state, st, sc.live ? "live" : "",
    sc.state !== "done" && sc.verdict ? "so far rolling" : ""].join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

function renderList() {
  const ul = $("scans");
  const all = [...scans.values()];
  const words = $("scan-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const items = all.filter((sc) => matches(sc, words)).sort((a, b) =>
    (b.submitted_at || b.updated_at || "").localeCompare(a.submitted_at || a.updated_at || "") ||
    b.video_id.localeCompare(a.video_id));
  const count = $("filter-count");
  count.hidden = !words.length;
  count.textContent = items.length ? `${items.length} of ${all.length} scans` : `No scan matches (${all.length} in all).`;
  ul.replaceChildren(...items.map((sc) => {
    const li = el("li", { "data-video": sc.video_id, "data-state": sc.state });
    if (sc.video_id === selected) li.classList.add("selected");
    const done = sc.state === "done";
    const st = done && sc.verdict ? status(scanVerdict(sc)) : null;
    const badge = el("span", { class: "badge " + (st ? st.cls : "pending") }, st ? st.label : sc.stage || "pending");
    li.append(badge, el("span", { class: "name" }, label(sc)));
    let sub = done ? (st && st.showScore ? `${st.scoreLabel} ${fmtScore(sc.score)}` : "no score") : progressText(sc);
    if (!done && sc.verdict && sc.verdict !== "error") sub = soFar(sc) + " · " + sub;
    li.append(el("span", { class: "sub" }, sub + " · " + sc.video_id));
    li.addEventListener("click", () => select(sc.video_id));
    return li;
  }));
  $("no-scans").hidden = all.length > 0;
}

// scanVerdict is the verdict-shaped view of a scan summary, for status.
function scanVerdict(sc) {
  return { verdict: sc.verdict, final: sc.state === "done", complete: !sc.partial, read_share: sc.read_share };
}

function clamp01(x) { return Math.max(0, Math.min(1, x)); }

// readPercent rounds down, as the report does: a scan that missed the last frames never
// reads "100 %".
function readPercent(share) { return Math.floor(clamp01(share) * 100); }

// status words a verdict as the report does: rolling verdicts are "so far", never a final
// REAL/FAKE; a final verdict of part of the video is partial.
function status(v) {
  const partial = !!(v.final && v.complete === false && typeof v.read_share === "number");
  const pct = partial ? readPercent(v.read_share) : 0;
  const st = { label: v.verdict, cls: "v-" + v.verdict, showScore: true, scoreLabel: "score", partial, headline: "" };
  if (v.verdict === "error") {
    st.showScore = false;
    st.headline = "The scan failed: there is no verdict on this video.";
  } else if (v.verdict === "unknown") {
    st.showScore = false;
    st.headline = "No usable face: there is no score and no verdict. Absence of evidence is not evidence that the video is real.";
  } else if (!v.final) {
    st.label = v.verdict === "fake" ? "fake so far" : "no signal so far"; st.cls = "v-rolling"; st.scoreLabel = "score so far";
    st.headline = v.verdict === "fake" ? "Rolling update of a scan in progress: fake so far. Not final." :
      "Rolling update of a scan in progress: no fake signal so far. Not final; not a verdict of real.";
  } else if (partial && v.verdict === "fake") {
    st.label = "fake · partial"; st.scoreLabel = "score of the part read";
    st.headline = `Fake in the part read. Partial: only ${pct}% of the video was read.`;
  } else if (partial) {
    st.label = "partial"; st.cls = "v-partial"; st.scoreLabel = "score of the part read";
    st.headline = `Partial: only ${pct}% of the video was read. No fake signal in the part read; this is not a verdict of real on the whole video.`;
  } else if (v.verdict === "fake") {
    st.headline = "Fake: the video score is at or above the model's calibrated threshold.";
  } else if (v.verdict === "real") {
    st.headline = "Real: the video score is below the model's calibrated threshold. The model can miss manipulations.";
  } else {
    st.cls = "v-unknown";
  }
  return st;
}

// soFar is a rolling verdict in a few words.
function soFar(sc) {
  if (sc.verdict === "unknown") return "no usable face so far";
  return (sc.verdict === "fake" ? "fake so far" : "no fake signal so far") + ` (${fmtScore(sc.score)})`;
}

// readFrac is the share of the media read, or null while the length is unknown (before ingest
// reports it, sources that declare none, live streams): the bar is then indeterminate.
function readFrac(sc) {
  const d = sc.duration_seconds || 0;
  if (sc.live || !(d > 0)) return null;
  return clamp01((sc.media_seconds || 0) / d);
}

function readText(sc) {
  const m = sc.media_seconds || 0, f = readFrac(sc);
  if (sc.live) return `live · ${fmtTime(m)} of the stream read`;
  if (f !== null) return `${fmtTime(m)} of ${fmtTime(sc.duration_seconds)} read (${readPercent(f)} %)`;
  return `${fmtTime(m)} read (length not known yet)`;
}

function progressText(sc) {
  const pub = sc.crops_published || 0, scored = sc.crops_scored || 0;
  switch (sc.stage) {
    case "queued": return "waiting for ingest";
    case "ingesting": return `${readText(sc)} · ${pub} faces found, ${scored} scored`;
    case "scoring": return `${readText(sc)} · ${scored} of ${pub} faces scored`;
    case "stalled": return "no progress seen since the server started";
    default: return sc.stage || sc.state || "";
  }
}

// progressBar is the media-read bar of a scan in progress: determinate once the length is
// known, indeterminate (an animation, no percentage) before.
function progressBar(sc) {
  const f = readFrac(sc);
  const bar = el("div", { class: "bar" + (f === null ? " indeterminate" : ""), id: "d-bar", role: "progressbar",
    "aria-label": "media read", "aria-valuemin": "0", "aria-valuemax": "100" });
  const fill = el("div");
  if (f !== null) {
    bar.setAttribute("aria-valuenow", String(readPercent(f)));
    fill.style.width = readPercent(f) + "%";
  } else {
    bar.setAttribute("aria-valuetext", readText(sc));
  }
  bar.append(fill);
  return bar;
}

function upsertScan(sc) {
  const old = scans.get(sc.video_id) || {};
  scans.set(sc.video_id, Object.assign({}, old, sc));
}

// signIn sends the browser to the login form: the session cookie is missing or no longer
// valid (the server's tokens changed).
function signIn() { location.assign("/login"); }

async function loadList() {
  try {
    const r = await fetch("/api/scans");
    if (r.status === 401) { signIn(); return; }
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
  await fetchVerdict(id);
}

// fetchVerdict loads a scan's latest verdict (and state) from the API.
async function fetchVerdict(id) {
  try {
    const r = await fetch("/api/scans/" + encodeURIComponent(id));
    if (!r.ok) return;
    const body = await r.json();
    if (body.verdict) {
      const old = verdicts.get(id);
      if (!(old && old.final && !body.final && old.revision >= body.revision)) verdicts.set(id, body);
    }
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
  // The scan ended but the verdict in hand is not the final one (an event missed while
  // reconnecting): fetch it, rather than show a stale in-progress state.
  if (sc.state === "done" && !final && refetched !== selected) {
    refetched = selected;
    fetchVerdict(selected);
  }
  const st = v ? status(v) : null;
  const badge = $("d-verdict");
  badge.className = "badge " + (st ? st.cls : "pending");
  badge.textContent = st ? st.label : (sc.state === "done" ? "finished" : sc.stage || "pending");
  badge.setAttribute("data-verdict", final ? v.verdict : "");
  badge.setAttribute("data-partial", st && st.partial ? "true" : "");
  $("d-headline").textContent = st ? st.headline : "";
  $("d-headline").hidden = !(st && st.headline);
  $("d-input").textContent = sc.name || (v && v.input) || sc.input || "";
  renderPlayer(sc);
  const meta = [];
  if (v) {
    if (st.showScore) meta.push(`${st.scoreLabel} ${fmtScore(v.score)}`);
    meta.push(`threshold ${fmtScore(v.threshold)}`, `rule ${v.rule}`);
    if (v.model) meta.push(`model ${v.model}${v.model_version ? " " + v.model_version : ""}`);
    meta.push(`revision ${v.revision}`);
  }
  meta.push(selected);
  $("d-meta").textContent = meta.join(" · ");

  const prog = $("d-progress");
  prog.setAttribute("data-stage", final ? "finished" : sc.stage || "");
  if (final) {
    let t = `${v.frames_sampled} frames sampled, ${v.frames_with_face} with a face, ${v.crops_scored} faces scored, ${(v.tracks || []).length} track(s)` +
      (v.faces_too_small ? `, ${v.faces_too_small} faces too small to judge` : "");
    if (st.partial) t += ` · partial: only ${readPercent(v.read_share)} % of the video was read`;
    else if (sc.media_seconds > 0) t += ` · ${fmtTime(sc.media_seconds)} of media read`;
    prog.textContent = t;
  } else if (sc.state === "done") {
    prog.textContent = "finished";
  } else {
    prog.textContent = progressText(sc);
    if (sc.stage === "ingesting" || sc.stage === "scoring") prog.append(progressBar(sc));
  }
  const err = (v && v.error) || sc.error || "";
  $("d-error").hidden = !err;
  $("d-error").textContent = err;

  // Timeline and evidence change only with a new verdict: keep loaded images in place.
  const key = v ? `${selected}/${v.revision}/${v.final}/${v.created_at}` : selected + "/none";
  if (key === shownVerdictKey) return;
  shownVerdictKey = key;
  renderTimeline(v);
  renderTracks(v);
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
  const ev = (v && v.evidence) || [];
  // Drawn at the box's own width, so that its text keeps its size on a phone.
  const W = Math.max(320, Math.round(box.clientWidth || 800)), H = 220, L = 40, R = W - 12, T = 22, B = H - 28;
  let t0 = Infinity, t1 = -Infinity;
  for (const p of [...pts, ...ev]) if (isFinite(p.pts_seconds)) { t0 = Math.min(t0, p.pts_seconds); t1 = Math.max(t1, p.pts_seconds); }
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
  const step = niceStep((t1 - t0) / Math.max(2, Math.min(6, Math.floor((R - L) / 70))));
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
  // Evidence markers: where each evidence frame is, numbered as the evidence below; a click
  // shows it.
  ev.forEach((e, i) => {
    const g = svg("g", { class: "ev-marker", "data-n": i, tabindex: 0, role: "button",
      "aria-label": `evidence ${i + 1} at ${fmtTime(e.pts_seconds)}` });
    const mx = x(e.pts_seconds).toFixed(1);
    g.append(svg("line", { x1: mx, x2: mx, y1: T - 2, y2: B }),
      svg("circle", { cx: mx, cy: y(e.score).toFixed(1), r: 5 }),
      svg("rect", { x: (+mx - 10).toFixed(1), y: 1, width: 20, height: 16, rx: 3 }),
      svg("text", { x: mx, y: 13, "text-anchor": "middle" }, String(i + 1)),
      svg("title", {}, `evidence #${i + 1}: ${fmtTime(e.pts_seconds)}, track ${e.track_id}, score ${fmtScore(e.score)}${e.part ? ", " + e.part : ""}`));
    const show = () => showEvidence(i);
    g.addEventListener("click", show);
    g.addEventListener("keydown", (k) => { if (k.key === "Enter" || k.key === " ") { k.preventDefault(); show(); } });
    s.append(g);
  });
  box.replaceChildren(s);
}

// showEvidence brings evidence figure n into view and marks it for a moment.
function showEvidence(n) {
  const fig = document.querySelector(`#d-evidence figure[data-n="${n}"]`);
  if (!fig) return;
  fig.scrollIntoView({ block: "nearest" });
  fig.classList.add("flash");
  setTimeout(() => fig.classList.remove("flash"), 1200);
}

function renderTracks(v) {
  const box = $("d-tracks");
  const tracks = ((v && v.tracks) || []).slice().sort((a, b) => b.score - a.score || a.track_id - b.track_id);
  if (!tracks.length) {
    box.replaceChildren(el("p", { class: "muted" }, v ? "No face tracks." : "Tracks appear with the first verdict."));
    return;
  }
  const final = !!v.final;
  const table = el("table", { class: "tracks", id: "tracks-table" });
  const head = el("tr");
  for (const h of ["Track", "Faces", "Score", final ? "Verdict" : "So far", "From", "To"]) head.append(el("th", { scope: "col" }, h));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const tr of tracks) {
    const row = el("tr", { "data-track": tr.track_id });
    const word = final ? tr.verdict : (tr.verdict === "fake" ? "fake so far" : "no signal so far");
    row.append(el("td", {}, String(tr.track_id)), el("td", {}, String(tr.faces)), el("td", {}, fmtScore(tr.score)),
      el("td", { class: "v-" + tr.verdict }, word), el("td", {}, fmtTime(tr.first_pts)), el("td", {}, fmtTime(tr.last_pts)));
    table.tBodies[0].append(row);
  }
  box.replaceChildren(table);
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
      const img = el("img", {
        class: "evidence-img", alt: `evidence ${i + 1}: frame ${e.frame_index}`, tabindex: 0, title: "click to enlarge",
        src: `/api/scans/${encodeURIComponent(v.video_id)}/evidence/${i}?revision=${v.revision}`,
      });
      const caption = `#${i + 1} · ${fmtTime(e.pts_seconds)} · track ${e.track_id} · score ${fmtScore(e.score)}${e.part ? " · " + e.part : ""}`;
      img.addEventListener("click", () => zoom(img.src, img.alt, caption));
      img.addEventListener("keydown", (k) => { if (k.key === "Enter" || k.key === " ") { k.preventDefault(); zoom(img.src, img.alt, caption); } });
      fig.append(img);
    } else {
      fig.append(el("p", { class: "muted" }, "image not available"));
    }
    const cap = el("figcaption");
    cap.append(el("b", {}, `#${i + 1} score ${fmtScore(e.score)}`), ` at ${fmtTime(e.pts_seconds)} (frame ${e.frame_index}), track ${e.track_id}`,
      el("br"), `face box ${fmtRect(e.face_box)}`, el("br"), `hot region ${fmtRect(e.hot_region)}${e.part ? " (" + e.part + ")" : ""}`);
    fig.append(cap);
    const seek = el("button", { type: "button", class: "seek", "data-t": e.pts_seconds }, `▶ watch at ${fmtTime(e.pts_seconds)}`);
    seek.hidden = $("d-player").hidden;
    seek.addEventListener("click", () => playAt(e.pts_seconds));
    fig.append(seek);
    return fig;
  }));
}

// The player shows an upload (the server keeps it a while after the verdict, see
// serve.keep_uploads) so that an evidence moment can be watched in motion; it hides when the
// media is gone or the browser cannot play it, and the evidence's play buttons with it.
let playerFor = "";

function renderPlayer(sc) {
  const id = sc.name ? sc.video_id : "";
  if (id === playerFor) return;
  playerFor = id;
  const video = $("d-video");
  showPlayer(!!id);
  if (!id) {
    video.removeAttribute("src");
    video.load();
    return;
  }
  video.src = `/api/scans/${encodeURIComponent(id)}/media`;
}

// showPlayer shows or hides the player and the evidence's play buttons together (the scan's
// name, which says it is an upload, may arrive after its evidence is drawn).
function showPlayer(on) {
  $("d-player").hidden = !on;
  for (const b of document.querySelectorAll("#d-evidence .seek")) b.hidden = !on;
}

// playAt shows the upload at media time t (seconds, as the evidence's pts_seconds).
function playAt(t) {
  const video = $("d-video");
  if ($("d-player").hidden || !isFinite(t)) return;
  video.currentTime = Math.max(0, t);
  video.scrollIntoView({ block: "nearest" });
}

// zoom shows an evidence image at full size in a modal dialog (Escape, the button or a
// click outside the image closes it).
function zoom(src, alt, caption) {
  const d = $("zoom");
  const img = $("zoom-img");
  img.src = src;
  img.alt = alt;
  $("zoom-caption").textContent = caption;
  if (!d.open) d.showModal();
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
    if (r.status === 401) { signIn(); return; }
    if (r.status === 200 && body.duplicate_of) {
      // The same bytes were scanned before: the server answers with that scan.
      status.textContent = "Already scanned: " + body.video_id;
      status.setAttribute("data-video", body.video_id);
      $("url").value = "";
      $("file").value = "";
      if (!scans.has(body.video_id)) await loadList();
      select(body.video_id);
      return;
    }
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
    const status = $("submit-status");
    if (sc.state === "done" && status.getAttribute("data-video") === sc.video_id) {
      status.textContent = "Finished " + sc.video_id; // not "Queued" once the scan has ended
    }
    renderList();
    if (sc.video_id === selected) renderDetail();
  });
  es.addEventListener("deleted", (m) => {
    const { video_id: id } = JSON.parse(m.data);
    scans.delete(id);
    verdicts.delete(id);
    if (selected === id) selected = "";
    renderList();
    renderDetail();
  });
  es.addEventListener("reset", () => {
    // The events missed while disconnected are gone: start over from the list.
    scans.clear();
    loadList();
  });
  es.addEventListener("verdict", (m) => {
    const v = JSON.parse(m.data);
    const old = verdicts.get(v.video_id);
    // A rolling update never replaces a final verdict of the same or a later revision.
    if (old && old.final && !v.final && old.revision >= v.revision) return;
    verdicts.set(v.video_id, v);
    if (v.final) {
      // A final verdict ends every in-progress state, even if its "scan" event is late.
      upsertScan({ video_id: v.video_id, state: "done", stage: "finished", verdict: v.verdict, score: v.score,
        partial: v.complete === false && typeof v.read_share === "number", read_share: v.read_share });
      renderList();
    }
    if (v.video_id === selected) renderDetail();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("submit-form").addEventListener("submit", submitScan);
  $("scan-filter").addEventListener("input", renderList);
  $("zoom-close").addEventListener("click", () => $("zoom").close());
  $("d-video").addEventListener("error", () => showPlayer(false));
  // The timeline is drawn at its box's width: redraw it when that changes.
  let drawnWidth = 0;
  window.addEventListener("resize", () => {
    const w = $("d-timeline").clientWidth;
    if (selected && w && w !== drawnWidth) { drawnWidth = w; renderTimeline(verdicts.get(selected)); }
  });
  $("zoom").addEventListener("click", (e) => { if (e.target === $("zoom")) $("zoom").close(); });
  connect();
  const params = new URLSearchParams(location.search);
  if (params.get("submit")) {
    $("url").value = params.get("submit");
    submitScan();
  } else if (params.get("scan")) {
    select(params.get("scan"));
  }
});
