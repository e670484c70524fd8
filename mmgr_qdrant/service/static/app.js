// The mmgr search page: plain JavaScript over the JSON API, no build step, no external assets.
// Every text from the index is set with textContent (never innerHTML), so documents cannot inject markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { lastQuery: null, lastKind: null, browsePath: [], browseOffset: 0, votes: {} };
  const BOOLEAN = /(^|\s)(AND|OR|NOT)(\s|$)|[()]|\bmodality:|\w=\S/;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  async function api(path, options) {
    const res = await fetch(path, options);
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const err = new Error((body && body.message) || res.status + " " + res.statusText);
      err.kind = body && body.error; err.status = res.status;
      throw err;
    }
    return body;
  }

  function showError(target, err) {
    target.textContent = (err.kind ? err.kind + ": " : "") + err.message;
    target.classList.add("error");
  }

  function setStatus(target, text) { target.textContent = text; target.classList.remove("error"); }

  function preview(hit) {
    if (hit.thumbnail) return el("img", { src: hit.thumbnail, alt: hit.text || hit.file || "image " + hit.ref, loading: "lazy" });
    return el("div", { class: "textbox", text: hit.text || (hit.modality === "image" ? "(image without a file)" : "(empty)") });
  }

  function card(hit, opts) {
    const o = opts || {};
    const li = el("li", { class: "card", tabindex: "0", "data-ref": hit.ref, "aria-label": (hit.text || hit.file || hit.ref) + ", open details" });
    li.addEventListener("click", (e) => { if (!e.target.closest(".votes")) openDetail(hit.ref); });
    li.addEventListener("keydown", (e) => { if ((e.key === "Enter" || e.key === " ") && e.target === li) { e.preventDefault(); openDetail(hit.ref); } });
    const meta = el("div", { class: "meta" },
      el("span", { class: "caption", text: hit.text || hit.file || hit.modality }),
      o.noScore ? null : el("span", { class: "score", text: (o.relation ? o.relation + " · " : "") + "score " + hit.score.toFixed(3) }),
      el("span", { class: "docid", text: hit.docid_str ? "docid " + hit.docid_str : hit.modality }),
      hit.t != null ? el("span", { class: "moment", text: "video @ " + hit.t.toFixed(1) + " s" }) : null);
    li.append(preview(hit), meta);
    if (o.votes) li.append(votes(hit));
    return li;
  }

  function votes(hit) {
    const box = el("div", { class: "votes", role: "group", "aria-label": "Is this relevant?" });
    const key = state.lastQuery + "\u0000" + hit.ref;
    for (const [cls, relevant] of [["up", true], ["down", false]]) {
      const b = el("button", { type: "button", class: cls, "aria-label": relevant ? "Relevant" : "Not relevant",
        title: relevant ? "Relevant" : "Not relevant", "aria-pressed": state.votes[key] === relevant ? "true" : "false" }, thumb(relevant));
      b.addEventListener("click", async (e) => {
        e.stopPropagation();
        try {
          await api("/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ id: hit.id, query: state.lastQuery, relevant: relevant }) });
          state.votes[key] = relevant;
          for (const other of box.querySelectorAll("button")) other.setAttribute("aria-pressed", other === b ? "true" : "false");
          setStatus($("status"), "Thanks: marked " + (relevant ? "relevant" : "not relevant") + ".");
        } catch (err) { showError($("status"), err); }
      });
      box.append(b);
    }
    if (state.lastKind !== "text") for (const b of box.querySelectorAll("button")) { b.disabled = true; b.title = "Feedback works on text queries"; }
    return box;
  }

  // A thumb drawn inline (no icon font, no emoji font needed); thumbs down is the same shape turned over.
  function thumb(up) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", "18"); svg.setAttribute("height", "18");
    svg.setAttribute("aria-hidden", "true"); svg.setAttribute("focusable", "false");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", "M2 10h4v11H2z M8 10l4-8c1.7 0 3 1.3 3 3v4h5.5c1.2 0 2.1 1.1 1.9 2.3l-1.4 8.2c-.2 1-1 1.5-2 1.5H8z");
    path.setAttribute("fill", "currentColor");
    if (!up) path.setAttribute("transform", "rotate(180 12 12)");
    svg.append(path);
    return svg;
  }

  // -- search ---------------------------------------------------------------------------------
  function params() {
    const modality = document.querySelector('input[name="modality"]:checked').value || null;
    const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 24));
    return { modality: modality, k: k, explain: $("explain").checked };
  }

  async function runSearch(body, label) {
    const status = $("status");
    setStatus(status, "Searching\u2026");
    $("results").replaceChildren();
    try {
      const res = await api("/search", body);
      state.lastKind = res.kind;
      for (const h of res.hits) $("results").append(card(h, { votes: true }));
      setStatus(status, res.hits.length + " hits for " + label + " (" + res.kind + ", " + res.took_ms.toFixed(1) + " ms)");
      renderExplain(res.explain);
    } catch (err) { showError(status, err); renderExplain(null); }
  }

  function searchText(text) {
    const p = params();
    const isBool = BOOLEAN.test(text);
    state.lastQuery = text;
    const payload = { k: p.k, modality: p.modality, explain: p.explain };
    payload[isBool ? "query" : "text"] = text;
    return runSearch({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) },
      (isBool ? "the boolean query " : "") + JSON.stringify(text));
  }

  function searchImage(file) {
    const p = params();
    state.lastQuery = null;
    const form = new FormData();
    form.append("image", file);
    form.append("k", String(p.k));
    if (p.modality) form.append("modality", p.modality);
    form.append("explain", String(p.explain));
    return runSearch({ method: "POST", body: form }, "image " + JSON.stringify(file.name));
  }

  function renderExplain(info) {
    const panel = $("explain-panel"), body = $("explain-body");
    body.replaceChildren();
    if (!info) { panel.hidden = true; return; }
    panel.hidden = false;
    const dl = el("dl");
    const add = (k, v) => { dl.append(el("dt", { text: k }), el("dd", {}, typeof v === "string" ? el("code", { text: v }) : v)); };
    add("mode", String(info.mode));
    if (info.prefixes) add("prefixes admitted", info.prefixes.join("  ") || (info.stopped === "small" || info.stopped === "unsure" ? "no filter (" + info.stopped + ")" : "(none)"));
    if (info.admitted !== undefined) add("documents admitted", info.admitted + " of " + info.documents + " (" + (100 * (info.filter_fraction || 0)).toFixed(2) + "%)");
    if (info.filter) add("filter", JSON.stringify(info.filter));
    if (info.ranking) add("ranking", String(info.ranking));
    if (info.atoms) add("terms", info.atoms.map((a) => a.polarity + " " + a.term + (a.prefixes ? " \u2192 " + a.prefixes.length + " prefixes" : "")).join("; "));
    body.append(dl);
    if (info.scores && info.scores.length) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, ...["#", "score", "vector", "p(prefix)", "stage"].map((h) => el("th", { text: h })))));
      const tb = el("tbody");
      info.scores.forEach((s, i) => tb.append(el("tr", {}, ...[String(i + 1), s.score.toFixed(4), s.vector === null ? "" : s.vector.toFixed(4),
        s.prefix_prob === null ? "" : s.prefix_prob.toFixed(3), s.mode || ""].map((v) => el("td", { text: v })))));
      t.append(tb);
      body.append(t);
    }
  }

  // -- detail ---------------------------------------------------------------------------------
  async function openDetail(ref) {
    const dlg = $("detail"), body = $("detail-body");
    body.replaceChildren(el("p", { text: "Loading\u2026" }));
    $("linked").replaceChildren(); $("similar").replaceChildren();
    if (!dlg.open) dlg.showModal();
    try {
      const [hit, rel] = await Promise.all([api("/items/" + encodeURIComponent(ref)), api("/items/" + encodeURIComponent(ref) + "/related?k=12")]);
      $("detail-title").textContent = hit.text || hit.file || hit.modality + " " + hit.ref;
      const dl = el("dl");
      const add = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
      add("id", hit.ref); add("modality", hit.modality); add("docid", hit.docid_str || "(not built)");
      if (hit.file) add("file", hit.file);
      if (Object.keys(hit.payload).length) add("payload", JSON.stringify(hit.payload));
      const browseBtn = hit.docid.length ? el("button", { type: "button", text: "Browse its docid branch" }) : null;
      if (browseBtn) browseBtn.addEventListener("click", () => { dlg.close(); showBrowse(hit.docid.slice(0, Math.max(1, hit.docid.length - 1))); });
      if (hit.t != null) add("moment", hit.t.toFixed(1) + " s");
      // a video moment plays its file from the moment's time (the #t= media fragment)
      const shown = hit.media ? el("video", { src: hit.media, controls: "", preload: "metadata", "aria-label": "the video from " + hit.t.toFixed(1) + " s" })
        : hit.thumbnail ? el("img", { src: hit.thumbnail, alt: hit.text || hit.file || "image" }) : el("p", { text: hit.text || "" });
      body.replaceChildren(shown, dl, browseBtn);
      const linked = rel.hits.filter((h) => h.relation === "linked"), near = rel.hits.filter((h) => h.relation !== "linked");
      for (const h of linked) $("linked").append(card(h, { relation: "linked", noScore: true }));
      if (!linked.length) $("linked").append(el("li", { class: "muted", text: "None." }));
      for (const h of near) $("similar").append(card(h, {}));
    } catch (err) { showError(body, err); }
  }

  // -- browse ---------------------------------------------------------------------------------
  function crumbs() {
    const nav = $("crumbs");
    nav.replaceChildren();
    const path = state.browsePath;
    const root = el("button", { type: "button", text: "All", "aria-current": path.length === 0 ? "location" : null });
    root.addEventListener("click", () => showBrowse([]));
    nav.append(root);
    for (let i = 0; i < path.length; i++) {
      const sub = path.slice(0, i + 1);
      const b = el("button", { type: "button", text: i === 0 ? ({ 0: "text", 1: "image" }[path[0]] || String(path[0])) : String(path[i]),
        "aria-current": i === path.length - 1 ? "location" : null });
      b.addEventListener("click", () => showBrowse(sub));
      nav.append(el("span", { class: "muted", text: "\u203A" }), b);
    }
  }

  async function showBrowse(path, append) {
    switchView("browse");
    state.browsePath = path;
    if (!append) { state.browseOffset = 0; $("nodes").replaceChildren(); }
    crumbs();
    const status = $("browse-status");
    setStatus(status, "Loading\u2026");
    try {
      const res = await api("/browse?prefix=" + encodeURIComponent(path.join(".")) + "&offset=" + state.browseOffset);
      for (const n of res.children) $("nodes").append(node(n));
      state.browseOffset = res.offset + res.children.length;
      $("more-nodes").hidden = state.browseOffset >= res.total;
      setStatus(status, res.total ? res.total + " branches under " + (res.prefix || "the root") : "No documents under " + (res.prefix || "the root") + ".");
    } catch (err) { showError(status, err); }
  }

  function node(n) {
    const title = (n.label || "code " + n.codes[n.codes.length - 1]) + " \u00B7 " + n.count + (n.count === 1 ? " document" : " documents");
    const li = el("li", { class: "card node", tabindex: "0", "data-prefix": n.prefix, "aria-label": title + (n.leaf ? ", open document" : ", open branch") });
    const samples = el("div", { class: "samples" });
    for (const s of n.samples) samples.append(preview(s));
    li.append(samples, el("div", { class: "meta" }, el("span", { class: "caption", text: title }), el("span", { class: "docid", text: "prefix " + n.prefix })));
    const open = () => (n.leaf && n.samples.length ? openDetail(n.samples[0].ref) : showBrowse(n.codes));
    li.addEventListener("click", open);
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    return li;
  }

  // -- wiring ---------------------------------------------------------------------------------
  function switchView(view) {
    $("search-view").hidden = view !== "search";
    $("browse-view").hidden = view !== "browse";
    $("tab-search").setAttribute("aria-pressed", String(view === "search"));
    $("tab-browse").setAttribute("aria-pressed", String(view === "browse"));
  }

  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("q").value.trim();
    if (text) searchText(text); else setStatus($("status"), "Type a query, or drop an image.");
  });
  const drop = $("drop"), file = $("file");
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
  file.addEventListener("change", () => { if (file.files.length) searchImage(file.files[0]); file.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) searchImage(e.dataTransfer.files[0]);
  });
  $("tab-search").addEventListener("click", () => { switchView("search"); $("q").focus(); });
  $("tab-browse").addEventListener("click", () => showBrowse(state.browsePath));
  $("more-nodes").addEventListener("click", () => showBrowse(state.browsePath, true));
  $("home").addEventListener("click", (e) => { e.preventDefault(); switchView("search"); $("q").focus(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== $("q") && !$("detail").open) { e.preventDefault(); switchView("search"); $("q").focus(); }
  });
  api("/health").then((h) => { $("collection").textContent = h.collection; }).catch(() => {});
})();
