// Live tail: Server-Sent Events from the panel, one list item per message; for an aggregated view, one
// table of rows per window, replaced in place by the next window. Messages and rows are shown with
// textContent only, so a message can never inject markup into the page.
"use strict";

const MAX_SHOWN = 500;

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("tail");
  const log = document.getElementById("tail-log");
  const status = document.getElementById("tail-status");
  const stop = document.getElementById("tail-stop");
  document.getElementById("tail-clear").addEventListener("click", () => {
    log.replaceChildren();
    document.getElementById("tail-window").hidden = true; // the next window shows it again
  });
  if (!box || !box.dataset.streamUrl) return;

  let count = 0;
  const source = new EventSource(box.dataset.streamUrl);
  const finish = (text, bad) => {
    source.close(); // no automatic reconnection: a finished tail stays finished
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
    stop.hidden = true;
  };

  source.addEventListener("ready", (event) => {
    const info = JSON.parse(event.data);
    status.textContent = `tailing ${info.app} / ${info.channel} on shard ${info.shard} — waiting for messages…`;
    box.dataset.ready = "1";
  });
  source.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    count += 1;
    const item = document.createElement("li");
    item.className = "tail-item";
    const meta = document.createElement("div");
    meta.className = "tail-meta";
    meta.textContent = `#${count} · position ${data.position} · received ${new Date().toLocaleTimeString()}`;
    const body = document.createElement("pre");
    body.className = "tail-message";
    body.textContent = JSON.stringify(data.message, null, 2);
    item.append(meta, body);
    log.prepend(item);
    while (log.children.length > MAX_SHOWN) log.lastElementChild.remove();
    status.textContent = `tailing — ${count} message(s)`;
  });
  let windows = 0;
  source.addEventListener("window", (event) => {
    const data = JSON.parse(event.data);
    windows += 1;
    showWindow(data, windows);
    status.textContent = `tailing an aggregated view — ${windows} window(s)`;
  });
  source.addEventListener("notice", (event) => {
    // The broker lost the channel's shard for a while; the tail goes on and catches up by itself.
    status.textContent = `interrupted: ${JSON.parse(event.data).error} — the tail resumes by itself`;
  });
  source.addEventListener("end", (event) => finish(`stopped: ${JSON.parse(event.data).reason}`));
  source.addEventListener("failure", (event) => finish(`failed: ${JSON.parse(event.data).error}`, true));
  source.addEventListener("error", () => finish("disconnected from the panel", true));
  stop.addEventListener("click", () => finish("stopped"));
});

// One window of an aggregated view: a header row with every key the rows have (in first-seen order), one
// body row per group; the previous window's table is replaced whole.
function cellText(value) {
  if (value === null || value === undefined) return "null";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function showWindow(data, number) {
  const box = document.getElementById("tail-window");
  const table = document.getElementById("tail-window-table");
  const columns = [];
  for (const row of data.rows) {
    for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  }
  const head = document.createElement("tr");
  for (const key of columns) {
    const th = document.createElement("th");
    th.textContent = key;
    head.append(th);
  }
  const body = document.createElement("tbody");
  for (const row of data.rows) {
    const tr = document.createElement("tr");
    tr.className = "tail-window-row";
    for (const key of columns) {
      const td = document.createElement("td");
      td.textContent = cellText(row[key]);
      tr.append(td);
    }
    body.append(tr);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceWith(body);
  const end = new Date(data.end * 1000).toLocaleTimeString();
  let meta = `window #${number} · ${data.period} s ending ${end} · position ${data.position} · ${data.rows.length} row(s)`;
  if (data.dropped_groups) meta += ` · dropped_groups ${data.dropped_groups} (over max_groups)`;
  document.getElementById("tail-window-meta").textContent = meta;
  box.dataset.windows = String(number);
  box.hidden = false;
}
