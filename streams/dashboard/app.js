// The stockstream dashboard: polls the worker's REST API every second and redraws in place
// (no reload). Plain DOM, no libraries: the page is served by the worker itself.
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const known = { channels: new Set(), locations: new Set() };
let selected = null; // [sku, channel] whose provenance is shown

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function listUrl() {
  const params = new URLSearchParams({ history: "true", limit: "200" });
  const filters = { q: $("search").value.trim(), channel: $("channel").value, location: $("location").value,
                    below: $("below").value };
  for (const [name, value] of Object.entries(filters)) if (value !== "") params.set(name, value);
  return `/ats?${params}`;
}

// An inline SVG polyline of one column of the history points ([ms, ats, units/day]).
function sparkline(points, column, label) {
  const width = 110, height = 26, pad = 2;
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", `spark spark-${column}`);
  const title = document.createElementNS(svgNs, "title");
  const values = points.map((p) => p[column]);
  title.textContent = values.length ? `${label}: ${values[values.length - 1]} (${values.length} points)` : `${label}: no history yet`;
  svg.append(title);
  if (values.length === 0) return svg;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const lo = Math.min(...values), hi = Math.max(...values);
  const x = (t) => (t1 === t0 ? width - pad : pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad));
  const y = (v) => (hi === lo ? height / 2 : height - pad - ((v - lo) / (hi - lo)) * (height - 2 * pad));
  const line = document.createElementNS(svgNs, "polyline");
  const coords = points.map((p) => `${x(p[0]).toFixed(1)},${y(p[column]).toFixed(1)}`);
  if (coords.length === 1) coords.unshift(`${pad},${y(values[0]).toFixed(1)}`);
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  return svg;
}

function rememberOptions(select, values) {
  const have = new Set([...select.options].map((o) => o.value));
  for (const value of [...values].sort()) if (!have.has(value)) select.append(el("option", { value }, value));
}

function renderTable(list) {
  for (const item of list.items) {
    Object.keys(item.locations).forEach((l) => known.locations.add(l));
    Object.keys(item.allocated).forEach((c) => known.channels.add(c));
    Object.keys(item.reserved_by_channel).forEach((c) => known.channels.add(c));
  }
  rememberOptions($("channel"), known.channels);
  rememberOptions($("location"), known.locations);
  const locations = [...known.locations].sort(), channels = [...known.channels].sort();

  const head = el("tr", {}, el("th", {}, "SKU"), el("th", { class: "num" }, "ATS"), el("th", {}, "ATS trend"),
    el("th", {}, "sell-through /day"), ...locations.map((l) => el("th", { class: "num" }, `on hand · ${l}`)),
    el("th", { class: "num" }, "reserved"), ...channels.map((c) => el("th", { class: "num" }, `shows · ${c}`)));
  $("ats-head").replaceChildren(head);

  const rows = list.items.map((item) => {
    const history = item.history || [];
    const rate = history.length ? history[history.length - 1][2] : 0;
    const row = el("tr", { "data-sku": item.sku, class: item.ats <= 0 ? "out" : "" },
      el("td", { class: "sku" }, item.sku),
      el("td", { class: "num ats" }, item.ats),
      el("td", {}, sparkline(history, 1, "ATS")),
      el("td", { class: "velocity" }, sparkline(history, 2, "units/day"), el("span", { class: "rate" }, rate.toFixed(1))),
      ...locations.map((l) => el("td", { class: "num", "data-location": l }, item.locations[l] ? item.locations[l].on_hand : "")),
      el("td", { class: "num" }, item.reserved));
    for (const channel of channels) {
      const quantity = item.allocated[channel];
      const cell = el("td", { class: "num", "data-channel": channel });
      if (quantity !== undefined) {
        cell.append(el("button", { class: "why", type: "button", title: `Why does ${channel} show ${quantity}?`,
                                   "data-sku": item.sku, "data-channel": channel }, quantity));
      }
      row.append(cell);
    }
    return row;
  });
  $("ats-body").replaceChildren(...rows);
  // total is null when a worker stopped reading at its per-request budget (large catalogues).
  $("ats-note").textContent = !list.truncated ? `${list.total} SKUs`
    : list.total !== null ? `showing ${list.items.length} of ${list.total} SKUs`
    : `showing the first ${list.items.length} SKUs`;
}

function renderSummary(summary) {
  // Partitions still in their first sweep after a start or rebalance: counts so far.
  const counting = (summary.pending_partitions ?? []).length ? "+ (counting)" : "";
  $("count-skus").textContent = `${summary.skus}${counting}`;
  $("count-at-risk").textContent = `${summary.at_risk_total}${counting}`;
  $("count-quarantine").textContent = summary.quarantine_records ?? "?";
  $("count-dead-letter").textContent = summary.dead_letter_records ?? "?";
  $("at-risk").replaceChildren(...summary.at_risk.map((r) =>
    el("li", { "data-sku": r.sku }, el("strong", {}, r.sku), ` ${r.days_of_cover.toFixed(1)} days · ATS ${r.ats} · ${r.units_per_day}/day`)));
  if (!summary.at_risk.length) $("at-risk").append(el("li", { class: "empty" }, "none"));
  $("changes").replaceChildren(...summary.recent_changes.map((c) => el("li", {},
    el("button", { class: "why link", type: "button", "data-sku": c.sku, "data-channel": c.channel },
      `${c.sku} · ${c.channel}: ${c.previous_quantity ?? "–"} → ${c.quantity}`),
    el("span", { class: "when" }, ` v${c.version} · ${new Date(c.at_ms).toLocaleTimeString()}`))));
  if (!summary.recent_changes.length) $("changes").append(el("li", { class: "empty" }, "none yet"));
}

async function showProvenance(sku, channel) {
  selected = [sku, channel];
  const panel = $("provenance");
  panel.hidden = false;
  try {
    const p = await getJson(`/provenance/${encodeURIComponent(sku)}/${encodeURIComponent(channel)}`);
    const shows = p.published ? p.published.quantity : "nothing";
    $("provenance-title").textContent = `Why does ${channel} show ${shows} for ${sku}?`;
    $("provenance-text").textContent = p.explanation;
    const facts = [
      ["published", p.published ? `${p.published.quantity} (version ${p.published.version})` : "–"],
      ["ATS", `${p.ats.ats} (version ${p.ats.version})`],
      ["on hand", Object.entries(p.ats.locations).map(([l, s]) => `${l} ${s.on_hand}`).join(", ") || "–"],
      ["reserved", Object.entries(p.ats.reserved_by_channel).map(([c, q]) => `${c} ${q}`).join(", ") || "–"],
      ["safety stock", p.ats.safety_stock],
      ["rule", `v${p.rule.version} ${p.rule.mode}` + (p.rule.channel_rule ? ` ${JSON.stringify(p.rule.channel_rule)}` : "")],
      ["target now", p.target ?? "–"],
      ["movements", p.last_change && p.last_change.movement_ids.length ? p.last_change.movement_ids.join(", ") : "–"],
    ];
    $("provenance-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  } catch (error) {
    $("provenance-title").textContent = `${sku} · ${channel}`;
    $("provenance-text").textContent = `unavailable: ${error.message}`;
    $("provenance-facts").replaceChildren();
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.why");
  if (button) showProvenance(button.dataset.sku, button.dataset.channel);
});

let polls = 0;
async function poll() {
  try {
    const [list, summary] = await Promise.all([getJson(listUrl()), getJson("/api/summary")]);
    renderTable(list);
    renderSummary(summary);
    polls += 1;
    document.body.dataset.polls = String(polls);
    $("updated").textContent = new Date(summary.at_ms).toLocaleTimeString();
    $("status").textContent = "live";
    $("status").className = "status live";
    if (selected && polls % 5 === 0) showProvenance(...selected);
  } catch (error) {
    $("status").textContent = `waiting: ${error.message}`;
    $("status").className = "status down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
