// The explorer's only script (served from /static; pages carry no inline script).
// Every value from the server is inserted with textContent, never as HTML.
"use strict";

function el(tag, text) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function neuronHref(r) {
  return "/neurons/" + encodeURIComponent(r.model) + "/" + encodeURIComponent(r.layer) + "/" + r.unit;
}

function setupSearch(form) {
  const body = document.querySelector("#results tbody");
  const total = document.getElementById("total");
  const error = document.getElementById("error");
  const offset = document.getElementById("offset");
  const limit = document.getElementById("limit");
  const info = document.getElementById("pageinfo");
  let last = null;

  function params() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v !== "") p.set(k, v);
    return p;
  }

  function render(page) {
    body.replaceChildren();
    for (const r of page.items) {
      const tr = el("tr");
      const a = el("a", r.model + " " + (r.alias || r.layer) + " #" + r.unit);
      a.href = neuronHref(r);
      a.className = "neuron-link";
      const td = el("td");
      td.append(a);
      tr.append(td, el("td", r.block === null ? "" : r.block), el("td", r.summary),
                el("td", (r.open_concepts || []).join(", ")), el("td", r.concept || ""),
                el("td", r.score === undefined || r.score === null ? "" : r.score.toFixed(3)));
      body.append(tr);
    }
    total.textContent = page.total + " matching neurons";
    const from = page.total ? page.offset + 1 : 0;
    info.textContent = from + "–" + Math.min(page.offset + page.limit, page.total) + " of " + page.total;
    last = page;
  }

  async function run() {
    const p = params();
    const res = await fetch("/api/neurons?" + p.toString());
    const data = await res.json();
    if (!res.ok) {
      // a refused query (e.g. an unknown layer) shows its reason and no rows of another query
      error.textContent = data.detail;
      body.replaceChildren();
      total.textContent = "";
      info.textContent = "";
      last = null;
      return;
    }
    error.textContent = "";
    history.replaceState(null, "", "/?" + p.toString());
    render(data);
  }

  let timer = null;
  form.addEventListener("submit", (ev) => { ev.preventDefault(); offset.value = "0"; run(); });
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { offset.value = "0"; run(); }, 250);
  });
  document.getElementById("prev").addEventListener("click", () => {
    offset.value = String(Math.max(0, Number(offset.value) - Number(limit.value)));
    run();
  });
  document.getElementById("next").addEventListener("click", () => {
    if (last && Number(offset.value) + Number(limit.value) < last.total) {
      offset.value = String(Number(offset.value) + Number(limit.value));
      run();
    }
  });
  run();
}

function setupRating(form) {
  const rater = document.getElementById("rater");
  const status = document.getElementById("rate-status");
  rater.value = localStorage.getItem("and-rater") || "";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!rater.value.trim()) { status.textContent = "Enter your rater id first."; return; }
    localStorage.setItem("and-rater", rater.value.trim());
    let saved = 0;
    let counts = null;
    for (const fs of form.querySelectorAll("fieldset.description")) {
      const checked = fs.querySelector("input[type=radio]:checked");
      if (!checked) continue;
      const comment = fs.querySelector(".comment").value.trim();
      const body = {model: form.dataset.model, layer: form.dataset.layer,
                    unit: Number(form.dataset.unit), method: fs.dataset.method,
                    rating: Number(checked.value), rater: rater.value.trim()};
      if (comment) body.comment = comment;
      const res = await fetch("/api/ratings", {method: "POST", body: JSON.stringify(body),
                                               headers: {"Content-Type": "application/json"}});
      const data = await res.json();
      if (res.status !== 201) { status.textContent = "Not saved: " + data.detail; return; }
      saved += 1;
      counts = data.counts;
    }
    if (!saved) { status.textContent = "Choose a rating for at least one description."; return; }
    status.textContent = "Saved " + saved + " rating(s).";
    document.getElementById("count-total").textContent = counts.total;
    document.getElementById("neuron-ratings").textContent = counts.neuron;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const search = document.getElementById("search");
  if (search) setupSearch(search);
  const rate = document.getElementById("rate-form");
  if (rate) setupRating(rate);
});
