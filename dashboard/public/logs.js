// Live logs, read from process-compose through the gateway's /_pc/ proxy.
//
// process-compose keeps the last lines of every process in memory
// (log_length, 1000 by default) and serves them as
// GET /process/logs/{name}/{endOffset}/{limit}: the `limit` lines that end
// `endOffset` lines before the newest. The page polls that with endOffset 0
// and appends whatever follows the lines it already has. Polling needs no
// websocket, so no second kind of guard at the gateway: a browser cannot
// add the X-Dashboard header to a websocket handshake.
//
// Lines are rendered from the formats the platform writes: the services'
// JSON lines (tracing: `timestamp`, `level`, `message`, the request id in
// the `span`), Caddy's JSON access log (`ts`, `msg`, and the `request_id`
// the Caddyfile appends), Redis' own format, and anything else as it is.
// Card data never appears: no service logs it and Caddy masks it in URLs.
"use strict";

const LOG_POLL_MS = 500; // the open process: a new line shows within ~0.5 s
const LOG_ALL_POLL_MS = 1000; // every process, for "all processes" and traces
const LOG_FETCH_FOLLOW = 200; // lines asked for on a follow poll
const LOG_FETCH_FULL = 1000; // process-compose's default log_length
const LOG_KEEP = 3000; // lines kept per process in the page
const LOG_SHOW = 1500; // lines rendered at most
const LOG_ANCHOR = 20; // lines that must match to continue where we were

const logView = {
  mode: null, // null (closed) | "process" | "all"
  process: null,
  filter: "",
  paused: false,
  unseen: 0,
  // name → { entries: [...], window: [raw lines of the last fetch], seq }
  buffers: new Map(),
  generation: 0, // bumped on every mode change: stale poll loops stop
  reachable: null,
};

// ---------------------------------------------------------------- parsing

const TRACING_SKIP = new Set(["timestamp", "level", "message", "span", "spans", "target", "threadName", "threadId"]);
const REDIS_LINE = /^\d+:[A-Z] (\d{2}) (\w{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2})\.(\d{3}) ([.\-*#]) (.*)$/;
const REDIS_LEVEL = { ".": "debug", "-": "verbose", "*": "info", "#": "warn" };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function fieldText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function firstHeader(headers, name) {
  if (!headers || typeof headers !== "object") return undefined;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  const value = key ? headers[key] : undefined;
  return Array.isArray(value) ? value[0] : value;
}

// One line of `process`'s output as { time, level, message, requestId,
// fields: [[key, value]] }. `time` is null when the line carries none.
function parseLine(raw) {
  const parsed = { time: null, level: "", message: raw, requestId: null, fields: [] };
  if (raw.startsWith("{")) {
    let obj = null;
    try {
      obj = JSON.parse(raw);
    } catch {
      obj = null;
    }
    if (obj && typeof obj === "object") {
      if (typeof obj.ts === "number" && "msg" in obj) return parseCaddy(obj, parsed);
      if ("timestamp" in obj && "level" in obj) return parseTracing(obj, parsed);
    }
    return parsed;
  }
  const redis = REDIS_LINE.exec(raw);
  if (redis) {
    const [, day, month, year, h, m, s, ms, mark, message] = redis;
    const monthIndex = MONTHS.indexOf(month);
    if (monthIndex >= 0) {
      parsed.time = new Date(+year, monthIndex, +day, +h, +m, +s, +ms).getTime();
    }
    parsed.level = REDIS_LEVEL[mark] || "";
    parsed.message = message;
  }
  return parsed;
}

function parseTracing(obj, parsed) {
  const time = Date.parse(obj.timestamp);
  parsed.time = Number.isNaN(time) ? null : time;
  parsed.level = String(obj.level).toLowerCase();
  const span = obj.span && typeof obj.span === "object" ? obj.span : {};
  parsed.requestId = obj.request_id || span.request_id || null;
  const fields = Object.entries(obj).filter(([k]) => !TRACING_SKIP.has(k) && k !== "request_id");
  // A request's one access line reads like one.
  if (obj.message === "request" && obj.method && obj.path) {
    parsed.message = `${obj.method} ${obj.path} → ${obj.status}`;
    parsed.fields = fields.filter(([k]) => !["method", "path", "status"].includes(k));
  } else {
    parsed.message = fieldText(obj.message ?? "");
    parsed.fields = fields;
  }
  for (const [k, v] of Object.entries(span)) {
    if (k !== "name" && k !== "request_id") parsed.fields.push([k, v]);
  }
  parsed.fields = parsed.fields.map(([k, v]) => [k, fieldText(v)]);
  return parsed;
}

function parseCaddy(obj, parsed) {
  parsed.time = obj.ts * 1000;
  parsed.level = String(obj.level || "").toLowerCase();
  const request = obj.request && typeof obj.request === "object" ? obj.request : null;
  parsed.requestId =
    obj.request_id ||
    firstHeader(obj.resp_headers, "x-request-id") ||
    (request && firstHeader(request.headers, "x-request-id")) ||
    null;
  if (request && typeof obj.status === "number") {
    parsed.message = `${request.method} ${request.uri} → ${obj.status}`;
    parsed.fields = [["duration_ms", (Number(obj.duration || 0) * 1000).toFixed(1)]];
    if (request.remote_ip) parsed.fields.push(["remote_ip", request.remote_ip]);
  } else {
    parsed.message = fieldText(obj.msg);
    const skip = new Set(["ts", "level", "msg", "request_id"]);
    parsed.fields = Object.entries(obj)
      .filter(([k]) => !skip.has(k))
      .map(([k, v]) => [k, fieldText(v)]);
  }
  return parsed;
}

// ---------------------------------------------------------------- polling

// The lines of `current` that come after those of `previous`, both windows
// ending at the newest line: where previous' last LOG_ANCHOR lines occur in
// current, newest first. null when they do not: more lines arrived than
// were fetched, or the log was truncated.
function linesAfter(previous, current) {
  if (previous.length === 0) return current;
  const last = previous.length - 1;
  for (let i = current.length - 1; i >= 0; i--) {
    if (current[i] !== previous[last]) continue;
    let same = true;
    for (let k = 1; k < LOG_ANCHOR && i - k >= 0 && last - k >= 0; k++) {
      if (current[i - k] !== previous[last - k]) {
        same = false;
        break;
      }
    }
    if (same) return current.slice(i + 1);
  }
  return null;
}

async function fetchLog(name, limit) {
  // Bounded, so one stuck answer cannot stall the follow loop.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 5000);
  const response = await fetch(`/_pc/process/logs/${encodeURIComponent(name)}/0/${limit}`, {
    headers: PC_HEADERS,
    cache: "no-store",
    signal: abort.signal,
  }).finally(() => clearTimeout(timer));
  if (!response.ok) {
    const error = new Error(`HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  const body = await response.json();
  return Array.isArray(body.logs) ? body.logs : [];
}

function bufferOf(name) {
  if (!logView.buffers.has(name)) logView.buffers.set(name, { entries: [], window: [], seq: 0 });
  return logView.buffers.get(name);
}

// Brings one process' buffer up to date; resolves to the number of new lines.
async function pollProcess(name) {
  const buffer = bufferOf(name);
  const first = buffer.window.length === 0;
  let current = await fetchLog(name, first ? LOG_FETCH_FULL : LOG_FETCH_FOLLOW);
  let added = linesAfter(buffer.window, current);
  if (added === null) {
    current = await fetchLog(name, LOG_FETCH_FULL);
    added = linesAfter(buffer.window, current);
    if (added === null) {
      added = current;
      if (!first) append(buffer, name, "… (lines skipped: the log moved on faster than it was read)", true);
    }
  }
  for (const raw of added) append(buffer, name, raw, false);
  buffer.window = current.slice(-LOG_ANCHOR);
  if (buffer.entries.length > LOG_KEEP) buffer.entries.splice(0, buffer.entries.length - LOG_KEEP);
  return added.length;
}

function append(buffer, name, raw, marker) {
  const parsed = marker ? { time: null, level: "", message: raw, requestId: null, fields: [] } : parseLine(raw);
  // A line without a time of its own (process-compose's probe messages,
  // a panic's backtrace) sorts right after the line before it.
  const previous = buffer.entries[buffer.entries.length - 1];
  const time = parsed.time ?? (previous ? previous.time : Date.now());
  buffer.entries.push({ ...parsed, time, raw, process: name, seq: buffer.seq++, marker });
}

function watchedProcesses() {
  if (logView.mode === "process") return [logView.process];
  return state.processes.map((p) => p.name);
}

async function pollLogs(generation) {
  if (generation !== logView.generation) return;
  try {
    await pollOnce(generation);
  } catch (error) {
    // A bug must not stop the follow loop for good; the console has it.
    console.error("log poll failed", error);
  }
  if (generation !== logView.generation) return;
  setTimeout(() => pollLogs(generation), logView.mode === "process" ? LOG_POLL_MS : LOG_ALL_POLL_MS);
}

async function pollOnce(generation) {
  let added = 0;
  let failure = null;
  const names = watchedProcesses();
  const results = await Promise.allSettled(names.map((name) => pollProcess(name)));
  if (generation !== logView.generation) return;
  for (const result of results) {
    if (result.status === "fulfilled") added += result.value;
    else failure = result.reason;
  }
  // Reachable if any process answered (a process may just have gone).
  logView.reachable = names.length > 0 && results.some((r) => r.status === "fulfilled");
  if (!logView.reachable) logView.failure = failure;
  if (added > 0 || logView.dirty) {
    if (logView.paused) logView.unseen += added;
    else renderLog();
  }
  renderLogStatus();
}

function restartPolling() {
  logView.generation += 1;
  logView.dirty = true;
  const generation = logView.generation;
  if (logView.mode) pollLogs(generation);
}

// ---------------------------------------------------------------- views

function openLog(name) {
  logView.mode = "process";
  logView.process = name;
  logView.paused = false;
  logView.unseen = 0;
  $("#log-panel").hidden = false;
  $("#log-source").value = name;
  markSelectedProcess();
  restartPolling();
  renderLog();
}

function openAllLogs() {
  logView.mode = "all";
  logView.process = null;
  logView.paused = false;
  logView.unseen = 0;
  $("#log-panel").hidden = false;
  $("#log-source").value = "";
  markSelectedProcess();
  restartPolling();
  renderLog();
}

// Every line that carries `requestId`, from every process: the path of one
// request through the gateway, core-api, the connector and the PSP.
function traceRequest(requestId) {
  $("#log-filter").value = requestId;
  logView.filter = requestId;
  openAllLogs();
  $("#log-panel").scrollIntoView({ block: "start" });
}

function markSelectedProcess() {
  for (const row of document.querySelectorAll("#process-table tr[data-process]")) {
    row.classList.toggle("selected", logView.mode === "process" && row.dataset.process === logView.process);
  }
}

// The choices of the source menu: all processes, then each by name.
function renderLogSources() {
  const select = $("#log-source");
  const names = state.processes.map((p) => p.name).sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (names.join("\n") !== have.join("\n")) {
    const options = names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    });
    select.replaceChildren(select.options[0], ...options);
  }
  select.value = logView.mode === "process" ? logView.process : "";
  markSelectedProcess();
}

function visibleEntries() {
  let entries;
  if (logView.mode === "process") {
    entries = bufferOf(logView.process).entries;
  } else {
    entries = [];
    for (const buffer of logView.buffers.values()) entries.push(...buffer.entries);
    // Interleaved by time; a process' own order breaks ties.
    entries.sort((a, b) => a.time - b.time || a.process.localeCompare(b.process) || a.seq - b.seq);
  }
  const filter = logView.filter.trim().toLowerCase();
  if (filter) entries = entries.filter((e) => e.raw.toLowerCase().includes(filter));
  return entries;
}

function clockTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function requestIdButton(requestId) {
  const button = text("button", requestId.length > 13 ? `${requestId.slice(0, 8)}…` : requestId, "rid");
  button.type = "button";
  button.dataset.requestId = requestId;
  button.title = `request ${requestId}: every line carrying it, in every process`;
  button.addEventListener("click", () => traceRequest(requestId));
  return button;
}

function logLine(entry, showProcess) {
  const line = document.createElement("div");
  line.className = `log-line${entry.level ? ` level-${entry.level}` : ""}${entry.marker ? " marker" : ""}`;
  line.dataset.process = entry.process;
  if (entry.requestId) line.dataset.requestId = entry.requestId;
  line.append(text("span", clockTime(entry.time), "t"));
  if (showProcess) line.append(text("span", entry.process, "p"));
  line.append(text("span", entry.level || "", "l"));
  line.append(text("span", entry.message, "m"));
  if (entry.fields.length) {
    line.append(text("span", entry.fields.map(([k, v]) => `${k}=${v}`).join(" "), "f"));
  }
  if (entry.requestId) line.append(requestIdButton(entry.requestId));
  line.title = entry.raw;
  return line;
}

function renderLog() {
  logView.dirty = false;
  const box = $("#log-lines");
  if (!logView.mode) return;
  const entries = visibleEntries();
  const shown = entries.slice(-LOG_SHOW);
  const showProcess = logView.mode === "all";
  // Following, new lines only add to the end: those are appended and the
  // oldest dropped, so the lines on screen stay (and stay clickable).
  // Anything else (another view, a filter, a line that sorts in between)
  // renders the whole list again.
  const key = `${logView.mode}|${logView.process}|${logView.filter.trim().toLowerCase()}`;
  const rendered = logView.rendered || [];
  const last = rendered[rendered.length - 1];
  const k = key === logView.renderedKey && last ? shown.lastIndexOf(last) : -1;
  let inPlace = k >= 0 && k < rendered.length && box.children.length === rendered.length;
  for (let i = 0; inPlace && i <= k; i++) inPlace = shown[k - i] === rendered[rendered.length - 1 - i];
  if (inPlace) {
    for (let i = rendered.length - (k + 1); i > 0; i--) box.firstElementChild.remove();
    box.append(...shown.slice(k + 1).map((e) => logLine(e, showProcess)));
  } else {
    box.replaceChildren(...shown.map((e) => logLine(e, showProcess)));
  }
  logView.rendered = shown;
  logView.renderedKey = key;
  box.dataset.lines = String(shown.length);
  const processes = [...new Set(shown.map((e) => e.process))].sort();
  box.dataset.processes = processes.join(",");
  if (!logView.paused) box.scrollTop = box.scrollHeight;
  const title = $("#log-title");
  if (logView.mode === "process") title.textContent = `Log of ${logView.process}`;
  else if (logView.filter.trim()) title.textContent = `All processes, lines with “${logView.filter.trim()}”`;
  else title.textContent = "All processes, interleaved by time";
  const summary = $("#log-summary");
  summary.textContent =
    `${shown.length}${entries.length > shown.length ? ` of ${entries.length}` : ""} lines` +
    (showProcess && processes.length ? ` from ${processes.join(", ")}` : "") +
    ".";
}

function renderLogStatus() {
  const status = $("#log-status");
  const follow = $("#log-follow");
  follow.textContent = logView.paused ? `Follow${logView.unseen ? ` (${logView.unseen} new)` : ""}` : "Pause";
  follow.dataset.state = logView.paused ? "paused" : "following";
  if (logView.reachable === false) {
    status.className = "status-line warn";
    status.dataset.state = "unreachable";
    status.textContent =
      logView.failure && logView.failure.status === 403
        ? "The gateway shows logs only to requests from this machine (and from this page)."
        : "process-compose is not reachable: there are no logs to show here.";
  } else {
    status.className = "status-line";
    status.dataset.state = logView.paused ? "paused" : "following";
    status.textContent = logView.paused
      ? "Paused: new lines are collected, not shown."
      : `Following: new lines every ${logView.mode === "process" ? LOG_POLL_MS : LOG_ALL_POLL_MS} ms.`;
  }
}

function startLogs() {
  $("#log-source").addEventListener("change", (event) => {
    if (event.target.value) openLog(event.target.value);
    else openAllLogs();
  });
  $("#log-all").addEventListener("click", () => {
    $("#log-filter").value = "";
    logView.filter = "";
    openAllLogs();
  });
  $("#log-follow").addEventListener("click", () => {
    logView.paused = !logView.paused;
    if (!logView.paused) {
      logView.unseen = 0;
      renderLog();
    }
    renderLogStatus();
  });
  $("#log-filter").addEventListener("input", (event) => {
    logView.filter = event.target.value;
    if (logView.mode) renderLog();
  });
  $("#log-clear-filter").addEventListener("click", () => {
    $("#log-filter").value = "";
    logView.filter = "";
    if (logView.mode) renderLog();
  });
}
