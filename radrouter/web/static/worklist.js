"use strict";
// The reading list: one page of the API at a time, redrawn only when the change counter moves.
// Polling waits for each answer before the next timer (never two requests at once); waited times
// tick in the browser. Keys: j/k or arrows move, Enter opens the viewer, r marks read, a/d agree/disagree.
const PAGE_SIZE = 50;
const POLL_MS = 2000;
const rows = document.getElementById("rows");
const statusLine = document.getElementById("status");
const modalityFilter = document.getElementById("modality");
const priorityFilter = document.getElementById("priority");
const state = {offset: 0, total: 0, version: null, items: [], fetchedAt: 0, selected: null};

function waited(seconds) {
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  return hours ? `${hours} h ${minutes % 60} min` : `${minutes} min ${Math.floor(seconds % 60)} s`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// Only a radiologist (or admin) reads: a viewer's page has no Read buttons or keys (the API refuses anyway).
const canRead = document.getElementById("worklist").dataset.canRead === "true";

async function markRead(studyUid, verdict) {
  if (!canRead) return;
  try {
    await postJson(`/api/worklist/${encodeURIComponent(studyUid)}/read`, verdict ? {verdict} : {});
  } catch (error) {
    statusLine.textContent = `could not mark read: ${error.message}`;
  }
  await load();
}

function button(td, label, studyUid, verdict, key) {
  const b = document.createElement("button");
  b.textContent = label;
  b.title = `key ${key}`;
  b.className = verdict ? "outline secondary" : "";
  b.addEventListener("click", (event) => { event.stopPropagation(); markRead(studyUid, verdict); });
  td.appendChild(b);
}

function studyTime(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) : "";
}

function patientCell(row, item) {
  const td = row.insertCell();
  td.className = "patient";
  const who = item.identity;
  const name = who ? (who.patient_name || "(no name)") : "(header not on disk)";
  if (item.viewer_url) {
    const link = document.createElement("a");
    link.href = item.viewer_url;
    link.target = "_blank";
    link.rel = "noopener";
    link.className = "viewer";
    link.textContent = name;
    td.appendChild(link);
  } else {
    const strong = document.createElement("strong");
    strong.textContent = name;
    td.appendChild(strong);
  }
  const id = document.createElement("div");
  id.className = "muted patient-id";
  id.textContent = who ? who.patient_id : item.study_uid;
  td.appendChild(id);
}

function draw() {
  rows.replaceChildren();
  for (const item of state.items) {
    const who = item.identity || {};
    const row = rows.insertRow();
    row.dataset.studyUid = item.study_uid;
    row.className = item.priority + (item.overdue ? " overdue" : "");
    row.addEventListener("click", () => select(item.study_uid));
    cell(row, item.position);
    const badge = document.createElement("span");
    badge.className = "badge " + item.priority;
    badge.textContent = item.priority.toUpperCase();
    row.insertCell().appendChild(badge);
    patientCell(row, item);
    cell(row, [who.age, who.sex].filter(Boolean).join(" / "), "age-sex");
    cell(row, who.accession_number || "", "accession");
    cell(row, who.study_description || "", "description");
    cell(row, item.modalities.join(", "), "modality");
    cell(row, who.body_part || "", "body-part");
    cell(row, studyTime(who.study_time), "study-time");
    cell(row, item.finding || item.reason || "", "finding");
    cell(row, "", "waited");
    const actions = row.insertCell();
    actions.className = "actions";
    if (canRead) button(actions, "Read", item.study_uid, null, "r");
    if (canRead && item.finding) {
      button(actions, "Agree", item.study_uid, "agree", "a");
      button(actions, "Disagree", item.study_uid, "disagree", "d");
    }
  }
  if (!state.items.some((item) => item.study_uid === state.selected)) {
    state.selected = state.items.length ? state.items[0].study_uid : null;
  }
  highlight();
  tick();
  const last = Math.min(state.offset + PAGE_SIZE, state.total);
  document.getElementById("page-info").textContent =
    state.total ? `${state.offset + 1}–${last} of ${state.total}` : "nothing to read";
  document.getElementById("prev").disabled = state.offset === 0;
  document.getElementById("next").disabled = last >= state.total;
}

function tick() {
  const elapsed = (Date.now() - state.fetchedAt) / 1000;
  state.items.forEach((item, i) => {
    const row = rows.rows[i];
    if (row) row.querySelector(".waited").textContent =
      waited(item.waited_s + elapsed) + (item.overdue ? " (over cap)" : "");
  });
}

function selectedRow() {
  return state.selected ? rows.querySelector(`tr[data-study-uid="${CSS.escape(state.selected)}"]`) : null;
}

function highlight() {
  for (const row of rows.rows) {
    const chosen = row.dataset.studyUid === state.selected;
    row.classList.toggle("selected", chosen);
    row.setAttribute("aria-selected", String(chosen));
  }
}

function select(studyUid) {
  state.selected = studyUid;
  highlight();
  const row = selectedRow();
  if (row) row.scrollIntoView({block: "nearest"});
}

function move(step) {
  const uids = state.items.map((item) => item.study_uid);
  const at = uids.indexOf(state.selected);
  const next = Math.max(0, Math.min(uids.length - 1, at + step));
  if (uids.length) select(uids[next]);
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const item = state.items.find((i) => i.study_uid === state.selected);
  const keys = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    Enter: () => item && item.viewer_url && window.open(item.viewer_url, "_blank", "noopener"),
    r: () => item && markRead(item.study_uid, null),
    a: () => item && item.finding && markRead(item.study_uid, "agree"),
    d: () => item && item.finding && markRead(item.study_uid, "disagree"),
  };
  if (keys[event.key]) {
    event.preventDefault();
    keys[event.key]();
  }
});

function query() {
  const params = new URLSearchParams({limit: PAGE_SIZE, offset: state.offset});
  if (modalityFilter.value) params.set("modality", modalityFilter.value);
  if (priorityFilter.value) params.set("priority", priorityFilter.value);
  return params;
}

async function fetchPage() {
  try {
    for (;;) {
      const response = await fetch(`/api/worklist?${query()}`);
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const items = await response.json();
      state.total = Number(response.headers.get("X-Total-Count"));
      if (state.offset && state.offset >= state.total) {  // the last page emptied: step back
        state.offset = Math.max(0, state.offset - PAGE_SIZE);
        continue;
      }
      state.items = items;
      state.version = response.headers.get("X-Worklist-Version");
      state.fetchedAt = Date.now();
      draw();
      statusLine.textContent = `${state.total} to read · updated ${new Date().toLocaleTimeString()}`;
      return;
    }
  } catch (error) {
    statusLine.textContent = `cannot reach radrouter: ${error}`;
  }
}

let loading = null;
async function load() {
  // One request at a time: a call while one runs waits for it, then loads again with the new state.
  while (loading) await loading;
  loading = fetchPage().finally(() => { loading = null; });
  return loading;
}

async function poll() {
  try {
    const response = await fetch("/api/worklist/version");
    const {version} = await response.json();
    if (version !== state.version) await load();
  } catch (error) {
    statusLine.textContent = `cannot reach radrouter: ${error}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

for (const filter of [modalityFilter, priorityFilter]) {
  filter.addEventListener("change", () => { state.offset = 0; load(); });
}
document.getElementById("prev").addEventListener("click", () => { state.offset -= PAGE_SIZE; load(); });
document.getElementById("next").addEventListener("click", () => { state.offset += PAGE_SIZE; load(); });
setInterval(tick, 1000);
load().then(() => setTimeout(poll, POLL_MS));
