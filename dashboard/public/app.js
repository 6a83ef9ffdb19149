// The dev dashboard: plain browser JavaScript, no framework, nothing fetched
// from anywhere but this gateway. The parts:
//   - the process panel reads process-compose's REST API through the
//     gateway's /_pc/ proxy (same origin, so no CORS), grouped by namespace,
//     with Restart, Stop and Start, and says so plainly when process-compose
//     is not there; a process name opens its live log (logs.js);
//   - the queue panel (queue.js) reads core-api's admin view of the stream,
//     the consumer group, retries and dead letters, with Requeue;
//   - Get token / Create payment call the real APIs and show the raw
//     request and response, and the request id links to its trace;
//   - the transactions table lists the merchant's transactions with the list
//     endpoint's filters and refreshes while any of them is not final.
"use strict";

const FINAL = new Set(["succeeded", "declined", "failed"]);
const PROCESS_POLL_MS = 2000;
const TX_POLL_MS = 1000;
// The gateway only forwards /_pc/ and /_admin/ requests that carry this
// header: a page on another site cannot add it without a CORS preflight
// nobody answers.
const PC_HEADERS = { "X-Dashboard": "1" };

const $ = (selector) => document.querySelector(selector);

const state = {
  token: null, // { value, user, merchant, exp (ms since epoch), apiKey }
  cursor: null, // starting_after of the current page
  nextCursor: null,
  txTimer: null,
};

// ---------------------------------------------------------------- helpers

function text(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined && content !== null) el.textContent = String(content);
  if (className) el.className = className;
  return el;
}

// RFC 4122 version 4, from getRandomValues: crypto.randomUUID() exists only
// in secure contexts, and http://platform:8000 is not one.
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

function formatAmount(amount, currency) {
  try {
    const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
    return `${(amount / 10 ** digits).toFixed(digits)} ${currency}`;
  } catch {
    return `${amount} ${currency}`;
  }
}

function shortTime(rfc3339) {
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? String(rfc3339 ?? "") : d.toLocaleTimeString();
}

function age(nanoseconds) {
  const s = Math.floor((nanoseconds || 0) / 1e9);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// ------------------------------------------------------ raw HTTP exchange

function describeRequest(method, path, headers, body) {
  const lines = [`${method} ${path}`];
  for (const [name, value] of Object.entries(headers)) {
    // Never the secret: a token's header part, an API key's last four.
    let shown = value;
    if (name === "Authorization") {
      shown = value.startsWith("Bearer sk_") ? `Bearer sk_test_…${value.slice(-4)}` : `${value.slice(0, 20)}…`;
    }
    lines.push(`${name}: ${shown}`);
  }
  if (body !== undefined) lines.push("", body);
  return lines.join("\n");
}

function describeResponse(response, bodyText) {
  const lines = [`${response.status} ${response.statusText}`];
  response.headers.forEach((value, name) => lines.push(`${name}: ${value}`));
  let pretty = bodyText;
  try {
    pretty = JSON.stringify(JSON.parse(bodyText), null, 2);
  } catch {
    // not JSON: shown as it came
  }
  if (bodyText) lines.push("", pretty);
  return lines.join("\n");
}

// Sends one request through the gateway. `show` puts the raw exchange in
// the "Last call" panel. Resolves to { status, body, error } where `error`
// is the platform's error object for 4xx/5xx answers.
async function call(method, path, { headers = {}, json, show = false } = {}) {
  const sent = { ...headers };
  let body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json, null, 2);
  }
  if (show) {
    $("#raw-request").textContent = describeRequest(method, path, sent, body);
    $("#raw-response").textContent = "(waiting…)";
  }
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body, cache: "no-store" });
  } catch (e) {
    const error = { code: "network_error", message: `the gateway did not answer: ${e.message}` };
    if (show) $("#raw-response").textContent = `(no response: ${e.message})`;
    return { status: 0, body: null, error };
  }
  const bodyText = await response.text();
  if (show) {
    $("#raw-response").textContent = describeResponse(response, bodyText);
    // The gateway's id of this request: a link to its trace in the logs.
    const requestId = response.headers.get("X-Request-Id");
    $("#last-request").hidden = !requestId;
    $("#last-request-id").replaceChildren(...(requestId ? [requestIdButton(requestId)] : []));
  }
  let parsed = null;
  try {
    parsed = JSON.parse(bodyText);
  } catch {
    parsed = null;
  }
  let error = null;
  if (!response.ok) {
    error = (parsed && parsed.error) || { code: "http_" + response.status, message: bodyText || response.statusText };
    // process-compose answers errors as {"error": "text"}.
    if (typeof error === "string") error = { code: "http_" + response.status, message: error };
  }
  return { status: response.status, body: parsed, error };
}

// A sentence a person can act on, for an error of the platform.
function explain(status, error) {
  switch (error.code) {
    case "token_expired":
      return `Your token expired (tokens live ${state.token ? state.token.lifetime : 30} seconds). Click Get token for a new one, then try again.`;
    case "missing_token":
      return "No token: click Get token first.";
    case "invalid_token":
      return "The gateway refused the token. Click Get token for a new one.";
    case "api_key_invalid":
      return "The API key is unknown or revoked. Paste a live key, or get a token.";
    case "customer_not_permitted":
      return "This user may pay only for the customers linked to them (alice: cus_1, cus_2; carol: cus_2); an API key may pay for any.";
    case "invalid_credentials":
      return "Wrong user name or password.";
    case "too_many_attempts":
      return "Too many failed logins for this user; wait a little and try again.";
    case "idempotency_key_reused":
    case "request_in_progress":
      return `${error.message} (the dashboard sends a fresh Idempotency-Key per click; try again).`;
    case "network_error":
      return `${error.message}. Is the platform running?`;
    default: {
      const param = error.param ? ` (field: ${error.param})` : "";
      const what = status >= 500 ? "The platform failed" : "The request was refused";
      return `${what}: ${error.message || error.code}${param}.`;
    }
  }
}

function showError(status, error) {
  const box = $("#call-error");
  box.replaceChildren(
    text("strong", `${status || "no answer"} ${error.code || ""}`),
    document.createTextNode(" — " + explain(status, error)),
  );
  if (["token_expired", "invalid_token", "missing_token", "api_key_invalid"].includes(error.code)) {
    box.append(" ");
    const again = text("button", "Get a new token");
    again.type = "button";
    again.addEventListener("click", getToken);
    box.append(again);
  }
  box.hidden = false;
  box.dataset.code = error.code || "";
}

function clearError() {
  const box = $("#call-error");
  box.hidden = true;
  box.replaceChildren();
  box.dataset.code = "";
}

// --------------------------------------------------------- process panel

// Namespaces of process-compose.yaml in the order a developer reads them:
// what everything depends on first, then the PSP stand-in, our services,
// and the dev loop's watcher; any other namespace after these, by name.
const NAMESPACE_ORDER = ["infra", "sandbox", "services", "dev"];

function namespaceRank(namespace) {
  const i = NAMESPACE_ORDER.indexOf(namespace);
  return i === -1 ? NAMESPACE_ORDER.length : i;
}

// The last answer of GET /processes (names feed the log views too).
state.processes = [];

async function refreshProcesses() {
  const status = $("#pc-status");
  const table = $("#process-table");
  let response;
  try {
    response = await fetch("/_pc/processes", { headers: PC_HEADERS, cache: "no-store" });
  } catch {
    response = null;
  }
  let data = null;
  if (response && response.ok) {
    try {
      data = (await response.json()).data;
    } catch {
      data = null;
    }
  }
  if (!Array.isArray(data)) {
    state.processes = [];
    table.hidden = true;
    status.className = "status-line warn";
    status.dataset.state = "unreachable";
    status.textContent =
      response && response.status === 403
        ? "The gateway shows process-compose only to requests from this machine (and from this page)."
        : "process-compose is not reachable: the platform is not running under process-compose here " +
          "(for example in CI), or its API is not on the port the gateway expects " +
          "(PC_API_UPSTREAM, default 127.0.0.1:8080). Tokens, payments, the queue and the table below still work.";
    renderLogSources();
    return;
  }
  state.processes = data;
  status.className = "status-line";
  status.dataset.state = "ok";
  const ready = data.filter((p) => p.is_ready === "Ready").length;
  status.textContent = `${data.length} processes, ${ready} ready. Click a name for its log.`;

  const groups = new Map();
  for (const p of data) {
    const namespace = p.namespace || "default";
    if (!groups.has(namespace)) groups.set(namespace, []);
    groups.get(namespace).push(p);
  }
  const namespaces = [...groups.keys()].sort(
    (a, b) => namespaceRank(a) - namespaceRank(b) || a.localeCompare(b),
  );
  const bodies = namespaces.map((namespace) => {
    const body = document.createElement("tbody");
    body.dataset.namespace = namespace;
    const heading = document.createElement("tr");
    heading.className = "group";
    const cell = text("th", namespace);
    cell.colSpan = 7;
    heading.append(cell);
    body.append(heading);
    const processes = groups.get(namespace).sort((a, b) => a.name.localeCompare(b.name));
    body.append(...processes.map(processRow));
    return body;
  });
  for (const old of [...table.tBodies]) old.remove();
  table.append(...bodies);
  table.hidden = false;
  renderLogSources();
}

function processRow(p) {
  const tr = document.createElement("tr");
  tr.dataset.process = p.name;
  tr.dataset.status = p.status;
  tr.dataset.ready = p.is_ready;
  tr.dataset.pid = String(p.pid || 0);
  tr.dataset.restarts = String(p.restarts);
  const running = p.status === "Running";

  const name = text("button", p.name, "link");
  name.type = "button";
  name.dataset.role = "open-log";
  name.title = `the log of ${p.name}, following`;
  name.addEventListener("click", () => openLog(p.name));
  const nameCell = document.createElement("td");
  nameCell.append(name);
  if (logView.mode === "process" && logView.process === p.name) tr.classList.add("selected");

  const statusCell = text("td", p.status, running ? "ok" : p.status === "Error" ? "bad" : "");
  const readyCell = text("td", p.is_ready === "-" ? "—" : p.is_ready);
  readyCell.className = p.is_ready === "Ready" ? "ok" : p.is_ready === "Not Ready" ? "bad" : "";

  const action = document.createElement("td");
  action.className = "actions";
  const restart = processButton("Restart", "POST", `/_pc/process/restart/${encodeURIComponent(p.name)}`);
  const stop = processButton("Stop", "PATCH", `/_pc/process/stop/${encodeURIComponent(p.name)}`);
  const startButton = processButton("Start", "POST", `/_pc/process/start/${encodeURIComponent(p.name)}`);
  // Start only what is not running; Stop only what is.
  stop.disabled = !running;
  startButton.disabled = running || p.status === "Launching" || p.status === "Restarting";
  action.append(restart, stop, startButton);

  tr.append(
    nameCell,
    statusCell,
    readyCell,
    text("td", p.restarts, "num"),
    text("td", p.pid || "—", "num"),
    text("td", running ? age(p.age) : "—", "num"),
    action,
  );
  return tr;
}

function processButton(label, method, path) {
  const button = text("button", label);
  button.type = "button";
  button.dataset.action = label.toLowerCase();
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = `${label}…`;
    const result = await call(method, path, { headers: PC_HEADERS, show: true });
    if (result.error) showError(result.status, result.error);
    else clearError();
    await refreshProcesses();
  });
  return button;
}

// ------------------------------------------------------------------ token

function renderToken() {
  const el = $("#token-state");
  const t = state.token;
  if (!t) {
    el.textContent = "No token yet.";
    el.className = "status-line";
    return;
  }
  if (t.apiKey) {
    // Keys do not expire; they are revoked (DELETE /auth/api_keys/{id}).
    el.textContent = `Using API key …${t.value.slice(-4)} (acts for every customer of its merchant).`;
    el.className = "status-line ok";
    el.dataset.state = "valid";
    return;
  }
  const left = Math.ceil((t.exp - Date.now()) / 1000);
  if (left > 0) {
    el.textContent = `Token for ${t.user} (merchant ${t.merchant}), expires in ${left} s.`;
    el.className = "status-line ok";
    el.dataset.state = "valid";
  } else {
    el.textContent = `The token for ${t.user} expired. Click Get token for a new one.`;
    el.className = "status-line warn";
    el.dataset.state = "expired";
  }
}

async function getToken(event) {
  if (event) event.preventDefault();
  const user = $("#user").value;
  const result = await call("POST", "/auth/token", {
    json: { username: user, password: "password" },
    show: true,
  });
  if (result.error) {
    showError(result.status, result.error);
    return;
  }
  clearError();
  const claims = jwtClaims(result.body.access_token);
  state.token = {
    value: result.body.access_token,
    user: claims.sub || user,
    merchant: claims.mid || "?",
    exp: claims.exp ? claims.exp * 1000 : Date.now() + result.body.expires_in * 1000,
    lifetime: result.body.expires_in,
  };
  renderToken();
  $("#tx-merchant").textContent = `(merchant ${state.token.merchant})`;
  state.cursor = null;
  await refreshTransactions();
}

// An API key instead of a token: kept in memory only, like the token, and
// sent the same way (Authorization: Bearer sk_test_…).
async function useApiKey(event) {
  if (event) event.preventDefault();
  const key = $("#api-key").value.trim();
  if (!key.startsWith("sk_")) {
    showError(0, { code: "api_key_invalid", message: "an API key starts with sk_test_" });
    return;
  }
  $("#api-key").value = "";
  clearError();
  state.token = { value: key, user: "API key", merchant: "?", exp: Infinity, apiKey: true };
  renderToken();
  $("#tx-merchant").textContent = "";
  state.cursor = null;
  await refreshTransactions();
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token.value}` } : {};
}

// ---------------------------------------------------------------- payment

async function createPayment(event) {
  event.preventDefault();
  if (!state.token) {
    showError(0, { code: "missing_token", message: "no token" });
    return;
  }
  const amountText = $("#amount").value.trim();
  const body = {
    // A non-integer is sent as typed, so the API's own validation answers.
    amount: /^-?\d+$/.test(amountText) ? Number(amountText) : amountText,
    currency: $("#currency").value,
    customer_id: $("#customer").value.trim(),
    reference: `dash-${uuid4().slice(0, 8)}`,
    payment_method: {
      type: "card",
      number: $("#card").value,
      expiry_month: 12,
      expiry_year: 2030,
      cvc: "123",
    },
    metadata: { source: "dashboard" },
  };
  const result = await call("POST", "/transactions", {
    headers: { ...authHeaders(), "Idempotency-Key": uuid4() },
    json: body,
    show: true,
  });
  if (result.error) {
    showError(result.status, result.error);
    return;
  }
  clearError();
  $("#raw-response").dataset.transaction = result.body.id;
  await refreshTransactions();
}

async function showTransaction(id) {
  const result = await call("GET", `/transactions/${encodeURIComponent(id)}`, {
    headers: authHeaders(),
    show: true,
  });
  if (result.error) showError(result.status, result.error);
  else clearError();
}

// ----------------------------------------------------------- transactions

function listQuery() {
  const params = new URLSearchParams();
  const form = new FormData($("#filter-form"));
  for (const [name, raw] of form.entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    if (name === "from" || name === "to") {
      const d = new Date(value); // datetime-local: the browser's time zone
      params.set(name, Number.isNaN(d.getTime()) ? value : d.toISOString());
    } else {
      params.set(name, value);
    }
  }
  if (state.cursor) params.set("starting_after", state.cursor);
  return params.toString();
}

function scheduleTransactions(delay) {
  clearTimeout(state.txTimer);
  state.txTimer = delay === null ? null : setTimeout(refreshTransactions, delay);
}

async function refreshTransactions() {
  const status = $("#tx-status");
  if (!state.token) {
    status.textContent = "Get a token to see the merchant's transactions.";
    scheduleTransactions(null);
    return;
  }
  const query = listQuery();
  const result = await call("GET", `/transactions${query ? "?" + query : ""}`, { headers: authHeaders() });
  if (result.error) {
    status.className = "status-line warn";
    status.textContent = explain(result.status, result.error);
    status.dataset.code = result.error.code || "";
    renderToken();
    // Nothing to gain from polling with a token that no longer works.
    scheduleTransactions(null);
    return;
  }
  status.dataset.code = "";
  const rows = result.body.data || [];
  const pending = rows.filter((t) => !FINAL.has(t.status)).length;
  status.className = "status-line";
  status.textContent =
    `${rows.length} transaction${rows.length === 1 ? "" : "s"}` +
    (pending ? `, ${pending} not final yet: refreshing every second.` : ", all final.") +
    ` Last refresh ${new Date().toLocaleTimeString()}.`;
  $("#tx-table").tBodies[0].replaceChildren(
    ...rows.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.transaction = t.id;
      tr.dataset.status = t.status;
      const outcome = t.decline_code || t.failure_reason;
      const statusCell = text("td", outcome ? `${t.status} (${outcome})` : t.status, `tx-${t.status}`);
      statusCell.dataset.role = "status";
      const pm = t.payment_method || {};
      const detail = text("button", "GET");
      detail.type = "button";
      detail.title = `GET /transactions/${t.id}`;
      detail.addEventListener("click", () => showTransaction(t.id));
      const detailCell = document.createElement("td");
      detailCell.append(detail);
      tr.append(
        text("td", t.id, "mono"),
        statusCell,
        text("td", formatAmount(t.amount, t.currency), "num"),
        text("td", pm.last4 ? `${pm.brand || "card"} •${pm.last4}` : ""),
        text("td", t.customer_id),
        text("td", t.reference),
        text("td", t.created_by),
        text("td", t.attempts, "num"),
        text("td", shortTime(t.created_at)),
        detailCell,
      );
      return tr;
    }),
  );
  state.nextCursor = result.body.has_more ? result.body.next_cursor : null;
  $("#next-page").disabled = !state.nextCursor;
  $("#first-page").disabled = !state.cursor;
  scheduleTransactions(pending ? TX_POLL_MS : null);
}

// ------------------------------------------------------------------ start

function start() {
  $("#origin").textContent = location.origin;
  $("#token-form").addEventListener("submit", getToken);
  $("#api-key-form").addEventListener("submit", useApiKey);
  $("#payment-form").addEventListener("submit", createPayment);
  $("#filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.cursor = null;
    refreshTransactions();
  });
  $("#next-page").addEventListener("click", () => {
    state.cursor = state.nextCursor;
    refreshTransactions();
  });
  $("#first-page").addEventListener("click", () => {
    state.cursor = null;
    refreshTransactions();
  });
  startLogs();
  startQueue();
  startWebhooks();
  setInterval(renderToken, 1000);
  refreshProcesses();
  setInterval(refreshProcesses, PROCESS_POLL_MS);
}

start();
