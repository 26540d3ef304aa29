// The dashboard reads /v1/stats and the Prometheus text of /metrics every two seconds.
"use strict";

const $ = (id) => document.getElementById(id);

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:]+)(?:\{(.*)\})? (.+)$/);
    if (!match) continue;
    const labels = {};
    for (const part of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[part[1]] = part[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples, name, filter = () => true) {
  return samples.filter((s) => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);
}

// Upper bound of the bucket holding quantile q (histograms only know buckets).
function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1].count : 0;
  if (!total) return "–";
  const hit = buckets.find((b) => b.count >= q * total);
  return hit.le === Infinity ? "> 2.5 s" : `${(hit.le * 1000).toFixed(1)} ms`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = String(c);
    tr.append(td);
  }
  return tr;
}

async function refresh() {
  const [stats, text] = await Promise.all([
    fetch("/v1/stats").then((r) => r.json()),
    fetch("/metrics").then((r) => r.text()),
  ]);
  const samples = parseMetrics(text);
  $("m-requests").textContent = sum(samples, "shopfusion_requests_total");
  $("m-errors").textContent = sum(samples, "shopfusion_errors_total");
  $("m-rejected").textContent = sum(samples, "shopfusion_rejected_total");
  $("m-hit-rate").textContent = `${(100 * stats.cache.hit_rate).toFixed(1)}%`;
  $("m-events").textContent = stats.events_received;
  $("m-lag").textContent = `${stats.event_lag_s.toFixed(2)} s`;

  const routes = {};
  for (const s of samples.filter((x) => x.name === "shopfusion_request_seconds_bucket")) {
    const key = `${s.labels.method} ${s.labels.route}`;
    (routes[key] = routes[key] || []).push({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), count: s.value });
  }
  const body = $("latency").querySelector("tbody");
  body.replaceChildren(...Object.entries(routes).sort().map(([route, buckets]) => {
    buckets.sort((a, b) => a.le - b.le);
    return row([route, buckets[buckets.length - 1].count, quantile(buckets, 0.5), quantile(buckets, 0.99)]);
  }));

  $("model-version").textContent = stats.model_version;
  $("model-path").textContent = stats.artifact;
  $("model-pipeline").textContent =
    `sources: ${stats.sources.join(", ")} · fusion: ${stats.fusion} · ${stats.data.n_users} users, ` +
    `${stats.data.n_items} items · search index: ${stats.search ? "yes" : "no"}`;
  $("reloads").querySelector("tbody").replaceChildren(
    ...stats.reloads.slice().reverse().map((r) => row([r.at, r.artifact, r.status, r.detail])),
  );
  document.body.dataset.ready = "1";
}

refresh();
setInterval(refresh, 2000);
