// Live tail: Server-Sent Events from the panel, one list item per message. Messages are shown with
// textContent only, so a message can never inject markup into the page.
"use strict";

const MAX_SHOWN = 500;

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("tail");
  const log = document.getElementById("tail-log");
  const status = document.getElementById("tail-status");
  const stop = document.getElementById("tail-stop");
  document.getElementById("tail-clear").addEventListener("click", () => log.replaceChildren());
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
  source.addEventListener("notice", (event) => {
    // The broker lost the channel's shard for a while; the tail goes on and catches up by itself.
    status.textContent = `interrupted: ${JSON.parse(event.data).error} — the tail resumes by itself`;
  });
  source.addEventListener("end", (event) => finish(`stopped: ${JSON.parse(event.data).reason}`));
  source.addEventListener("failure", (event) => finish(`failed: ${JSON.parse(event.data).error}`, true));
  source.addEventListener("error", () => finish("disconnected from the panel", true));
  stop.addEventListener("click", () => finish("stopped"));
});
