// Dashboard: polls the stats JSON and draws small SVG charts. Every text goes in through textContent.
"use strict";

const HISTORY = 90; // points kept per series (3 minutes at the default 2 s interval)
const SVG = "http://www.w3.org/2000/svg";
const series = new Map(); // name -> array of numbers

function push(name, value) {
  let values = series.get(name);
  if (!values) series.set(name, (values = []));
  values.push(Number(value) || 0);
  if (values.length > HISTORY) values.shift();
  return values;
}

function drawSpark(svg, values) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = 120, height = 32;
  const max = Math.max(1, ...values);
  // Few points yet: spread them over the whole width rather than squeezing them to the right.
  const step = width / Math.max(values.length - 1, 1);
  const offset = values.length > 1 ? 0 : width;
  const points = values.map((v, i) => `${(offset + i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  if (points.length > 1) {
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("points", `${offset.toFixed(1)},${height} ${points.join(" ")} ${width},${height}`);
    area.setAttribute("class", "spark-area");
    svg.appendChild(area);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", "spark-line");
  svg.appendChild(line);
}

function spark(name, value) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 120 32");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark small");
  drawSpark(svg, push(name, value));
  return svg;
}

const fmt = (n) => (n >= 100 ? Math.round(n).toString() : (Number(n) || 0).toFixed(1));

function cell(row, content, className) {
  const td = row.insertCell();
  if (className) td.className = className;
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content;
  return td;
}

function fillTable(table, items, columns, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!items.length) {
    const row = body.insertRow();
    const td = cell(row, emptyText, "empty");
    td.colSpan = table.tHead.rows[0].cells.length;
    return;
  }
  for (const item of items) {
    const row = body.insertRow();
    for (const [render, className] of columns) cell(row, render(item), className);
  }
}

function appLink(root, app) {
  const a = document.createElement("a");
  a.href = root.dataset.appUrl.replace("__APP__", encodeURIComponent(app));
  a.textContent = app;
  return a;
}

function render(root, stats) {
  const totals = stats.totals;
  document.getElementById("total-connections").textContent = totals.connections;
  document.getElementById("total-publishes").textContent = fmt(totals.publishes_per_second);
  document.getElementById("total-deliveries").textContent = fmt(totals.deliveries_per_second);
  document.getElementById("total-nodes").textContent = stats.live_nodes;
  document.getElementById("nodes-note").textContent = stats.has_stats ? `${totals.nodes} reporting stats` : "";
  drawSpark(document.getElementById("spark-connections"), push("connections", totals.connections));
  drawSpark(document.getElementById("spark-publishes"), push("publishes", totals.publishes_per_second));
  drawSpark(document.getElementById("spark-deliveries"), push("deliveries", totals.deliveries_per_second));
  document.getElementById("no-stats").hidden = stats.has_stats;

  fillTable(document.getElementById("apps-stats"), stats.apps, [
    [(a) => appLink(root, a.app), "strong"],
    [(a) => a.connections, "num"],
    [(a) => fmt(a.publishes_per_second), "num"],
    [(a) => fmt(a.deliveries_per_second), "num"],
    [(a) => spark(`app:${a.app}`, a.publishes_per_second + a.deliveries_per_second), "chart"],
  ], "No apps yet.");
  fillTable(document.getElementById("channels-stats"), stats.channels, [
    [(c) => c.app || "?", ""],
    [(c) => c.channel, "strong"],
    [(c) => fmt(c.publishes_per_second), "num"],
    [(c) => fmt(c.deliveries_per_second), "num"],
    [(c) => spark(`channel:${c.app}::${c.channel}`, c.publishes_per_second + c.deliveries_per_second), "chart"],
  ], stats.has_stats ? "No traffic right now." : "No stats yet.");
  fillTable(document.getElementById("nodes-stats"), stats.nodes, [
    [(n) => n.node, ""],
    [(n) => n.connections, "num"],
    [(n) => fmt(n.publishes_per_second), "num"],
    [(n) => n.uptime || "", "muted"],
  ], "No stats yet.");
}

async function poll(root) {
  const status = document.getElementById("stats-status");
  try {
    const response = await fetch(root.dataset.statsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      status.textContent = "logged out — reload the page";
      return;
    }
    if (!response.ok) throw new Error(response.statusText);
    render(root, await response.json());
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("bad");
  } catch (error) {
    status.textContent = `cannot load stats (${error.message})`;
    status.classList.add("bad");
  }
  setTimeout(() => poll(root), Number(root.dataset.interval) || 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("dashboard");
  if (root) poll(root);
});
