// The status page of `grader serve`: polls /v1/status every two seconds and redraws.
// On TCP the API needs the bearer token: open the page as /#token=TOKEN (the fragment never
// leaves the browser); it is kept in this tab's sessionStorage and removed from the address.
"use strict";

const REFRESH_MS = 2000;

function token() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("grader-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("grader-token");
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function ago(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function seconds(ms) {
  return ms === null || ms === undefined ? "" : (ms / 1000).toFixed(2) + " s";
}

function fill(id, rows, columns, classOf) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  document.getElementById(id + "-count").textContent = rows.length;
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", "none", "empty");
    td.colSpan = document.querySelectorAll("#" + id + " thead th").length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr", null, "job-row " + (classOf ? classOf(row) : ""));
    tr.dataset.job = row.id;
    for (const [cls, value] of columns(row)) tr.append(el("td", value, cls));
    body.append(tr);
  }
}

function who(job) {
  return [
    ["id", job.id],
    ["kind", job.kind],
    ["submission", job.submission_id],
    ["user", job.username],
    ["assignment", job.lecture + " / " + job.assignment],
  ];
}

function resultClass(job) {
  if (job.state !== "done") return "stopped";
  return job.succeeded ? "ok" : "failed";
}

function histograms(scores) {
  const box = document.getElementById("histograms");
  box.replaceChildren();
  if (scores.length === 0) {
    box.append(el("p", "no graded submissions yet", "note empty"));
    return;
  }
  for (const h of scores) {
    const total = h.buckets.reduce((a, b) => a + b, 0);
    const top = Math.max(1, ...h.buckets);
    const card = el("div", null, "histogram");
    card.dataset.assignment = h.assignment;
    const max = h.max_score === null ? "" : ", max " + h.max_score;
    card.append(el("h3", h.assignment + " (" + total + " graded" + max + ")"));
    const bars = el("div", null, "bars");
    h.buckets.forEach((n, i) => {
      const bar = el("div", null, "bar");
      bar.style.height = (100 * n / top) + "%";
      bar.title = n + " scored " + i * 10 + "–" + (i + 1) * 10 + "%";
      bar.dataset.count = n;
      if (n > 0) bar.append(el("span", n));
      bars.append(bar);
    });
    card.append(bars);
    const axis = el("div", null, "axis");
    for (let i = 0; i < 10; i++) axis.append(el("span", i * 10 + "%"));
    card.append(axis);
    box.append(card);
  }
}

function draw(s) {
  const warm = s.warm ? " · warm workers " + s.warm.busy + " busy / " + s.warm.idle + " idle" : "";
  const kube = s.kube ? " · pods in flight " + s.kube.pods_in_flight : "";
  document.getElementById("summary").textContent =
    "backend " + (s.backend || "starting") +
    " · running " + s.running.length + " / " + s.concurrency +
    " · queued " + s.queued.length + " / " + s.queue_limit +
    " · accepted " + s.counters.accepted + warm + kube +
    (s.accepting ? "" : " · SHUTTING DOWN");
  fill("running", s.running, (j) => who(j).concat([["since", ago(j.started_at_ms)]]));
  fill("queued", s.queued, (j) =>
    [["position", j.queue_position]].concat(who(j), [["since", ago(j.submitted_at_ms)]]));
  fill("recent", s.recent, (j) => who(j).concat([
    ["result", j.state === "done" ? j.status + (j.failure ? " (" + j.failure + ")" : "") : j.state],
    ["score", j.score === null ? "" : j.score + (j.max_score === null ? "" : " / " + j.max_score)],
    ["took", seconds(j.duration_ms)],
    ["finished", ago(j.finished_at_ms) + " ago"],
  ]), resultClass);
  histograms(s.scores);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const headers = {};
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const reply = await fetch("/v1/status", { headers, cache: "no-store" });
    if (reply.status === 401) {
      problem.textContent = "This listener needs the bearer token: open this page as /#token=TOKEN.";
      problem.hidden = false;
    } else if (!reply.ok) {
      problem.textContent = "status: HTTP " + reply.status;
      problem.hidden = false;
    } else {
      problem.hidden = true;
      draw(await reply.json());
    }
  } catch (e) {
    problem.textContent = "grader serve does not answer (" + e + ")";
    problem.hidden = false;
  }
  setTimeout(refresh, REFRESH_MS);
}

refresh();
