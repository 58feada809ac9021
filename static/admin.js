// Cobra admin panel: confirmations, secret reveal/copy, the shard list editor. Plain JS, no build step.
// Secrets are fetched on demand (a CSRF-checked POST) and never written into the page's HTML.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

async function postJSON(url) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain-http pages on another host have no Clipboard API: fall back to a selected textarea.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused by the browser");
}

function flashButton(button, text) {
  const original = button.dataset.label || button.textContent;
  button.dataset.label = original;
  button.textContent = text;
  setTimeout(() => { button.textContent = original; }, 1500);
}

function setupSecrets() {
  document.querySelectorAll(".secret[data-secret-url]").forEach((box) => {
    const input = box.querySelector(".secret-value");
    const reveal = box.querySelector('[data-action="reveal"]');
    const copy = box.querySelector('[data-action="copy"]');
    const load = async () => (await postJSON(box.dataset.secretUrl)).secret;

    reveal.addEventListener("click", async () => {
      if (input.type === "text") { // hide again, and forget it
        input.type = "password";
        input.value = "";
        reveal.textContent = "Reveal";
        return;
      }
      try {
        input.value = await load();
        input.type = "text";
        input.select();
        reveal.textContent = "Hide";
      } catch (error) {
        flashButton(reveal, "Failed");
      }
    });

    copy.addEventListener("click", async () => {
      try {
        const secret = input.type === "text" && input.value ? input.value : await load();
        await copyText(secret);
        flashButton(copy, "Copied ✓");
      } catch (error) {
        flashButton(copy, "Failed");
      }
    });
  });
}

function setupConfirmations() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

function setupShardEditor() {
  const form = document.getElementById("shard-form");
  if (!form) return;
  const rows = document.getElementById("shard-rows");
  const template = document.getElementById("shard-row-template");

  // WTForms reads shards-0-name, shards-0-url, ... in order: renumber after every change.
  const renumber = () => {
    rows.querySelectorAll(".shard-row").forEach((row, index) => {
      row.querySelector(".position").textContent = String(index + 1);
      for (const [cls, field] of [["shard-name", "name"], ["shard-url", "url"]]) {
        const input = row.querySelector("." + cls);
        input.name = input.id = `shards-${index}-${field}`;
      }
    });
  };
  // After an edit the preview no longer describes the list: saving needs a new preview.
  const stale = () => {
    const save = document.getElementById("save-shards");
    if (save) save.remove();
    const preview = document.getElementById("shard-preview");
    if (preview) preview.classList.add("stale");
  };

  document.getElementById("add-shard").addEventListener("click", () => {
    rows.appendChild(template.content.cloneNode(true));
    renumber();
    stale();
    rows.querySelector(".shard-row:last-child .shard-name").focus();
  });
  rows.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const row = button.closest(".shard-row");
    if (button.hasAttribute("data-remove")) row.remove();
    else if (button.dataset.move === "up" && row.previousElementSibling) row.after(row.previousElementSibling);
    else if (button.dataset.move === "down" && row.nextElementSibling) row.before(row.nextElementSibling);
    else return;
    renumber();
    stale();
  });
  rows.addEventListener("input", stale);
  form.addEventListener("submit", renumber);
}

document.addEventListener("DOMContentLoaded", () => {
  setupSecrets();
  setupConfirmations();
  setupShardEditor();
});
