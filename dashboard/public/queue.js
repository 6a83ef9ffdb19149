// The queue panel: core-api's GET /_admin/queue through the gateway (which
// forwards it, like /_pc/, only to this page on this machine): the stream,
// the connectors' consumer group and who holds what, retries waiting for
// their time, and the dead letters with a Requeue button where requeueing
// is safe (see README "Dashboard": a final status never changes).
"use strict";

const QUEUE_POLL_MS = 1000;

// Why Requeue is refused, in words, by the endpoint's 409 codes.
const REFUSALS = {
  message_not_kept: "not requeueable: the message is not kept",
  transaction_final: "not requeueable: the transaction is final",
  unknown_transaction: "not requeueable: no such transaction",
};

function msAgo(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = ms / 1000;
  if (s < 1) return `${ms} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${Math.round(s / 60)} min`;
}

function cells(tr, values) {
  for (const value of values) {
    tr.append(value instanceof Node ? wrapCell(value) : text("td", value ?? "—"));
  }
  return tr;
}

function wrapCell(node) {
  const td = document.createElement("td");
  td.append(node);
  return td;
}

function emptyRow(table, columns, message) {
  const tr = document.createElement("tr");
  const td = text("td", message, "muted");
  td.colSpan = columns;
  tr.append(td);
  table.tBodies[0].replaceChildren(tr);
}

async function refreshQueue() {
  const status = $("#queue-status");
  let response = null;
  let body = null;
  try {
    response = await fetch("/_admin/queue", { headers: PC_HEADERS, cache: "no-store" });
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response || !response.ok || !body || !body.stream) {
    $("#queue-body").hidden = true;
    status.className = "status-line warn";
    status.dataset.state = "unreachable";
    const code = body && body.error ? body.error.code : null;
    status.textContent =
      response && response.status === 403
        ? "The gateway shows the queue only to requests from this machine (and from this page)."
        : `The queue is not readable: ${code ? `core-api answered ${response.status} ${code}` : "core-api did not answer"}.`;
    return;
  }
  status.className = "status-line";
  status.dataset.state = "ok";
  $("#queue-body").hidden = false;
  renderQueue(body);
  status.textContent = `Read ${new Date().toLocaleTimeString()}, every ${QUEUE_POLL_MS / 1000} s.`;
}

function renderQueue(q) {
  const group = q.groups.find((g) => g.name === "psp-connector");
  const summary = $("#queue-summary");
  summary.replaceChildren(
    stat("stream length", q.stream.length, "stream-length"),
    stat("group lag", group ? (group.lag ?? "unknown") : "no group", "lag"),
    stat("pending", group ? group.pending : 0, "pending"),
    stat("consumers", group ? group.consumers : 0, "consumers"),
    stat("scheduled retries", q.retries.count, "retries"),
    stat("dead letters", q.dead.length, "dead"),
  );

  const consumers = $("#consumer-table");
  if (q.consumers.length === 0) emptyRow(consumers, 3, "no consumer in group psp-connector");
  else
    consumers.tBodies[0].replaceChildren(
      ...q.consumers.map((c) => {
        const tr = cells(document.createElement("tr"), [c.name, c.pending, msAgo(c.idle_ms)]);
        tr.dataset.consumer = c.name;
        tr.dataset.pending = String(c.pending);
        return tr;
      }),
    );

  const pending = $("#pending-table");
  if (q.pending.length === 0) emptyRow(pending, 4, "nothing delivered and unacknowledged");
  else
    pending.tBodies[0].replaceChildren(
      ...q.pending.map((p) =>
        cells(document.createElement("tr"), [text("span", p.entry_id, "mono"), p.consumer, msAgo(p.idle_ms), p.deliveries]),
      ),
    );

  const retries = $("#retry-table");
  if (q.retries.next.length === 0) emptyRow(retries, 2, "no retry waiting");
  else
    retries.tBodies[0].replaceChildren(
      ...q.retries.next.map((r) => {
        const tr = cells(document.createElement("tr"), [text("span", r.transaction_id, "mono"), shortTime(r.due_at)]);
        tr.dataset.transaction = r.transaction_id;
        return tr;
      }),
    );

  const dead = $("#dead-table");
  if (q.dead.entries.length === 0) emptyRow(dead, 7, "no dead letters");
  else dead.tBodies[0].replaceChildren(...q.dead.entries.map(deadRow));
}

function stat(label, value, key) {
  const box = text("div", null, "stat");
  box.dataset.stat = key;
  box.append(text("span", value, "value"), text("span", label, "label"));
  return box;
}

function deadRow(d) {
  const tr = document.createElement("tr");
  tr.dataset.deadLetter = d.id;
  tr.dataset.reason = d.reason || "";
  if (d.transaction_id) tr.dataset.transaction = d.transaction_id;
  const transaction = d.transaction_id
    ? `${d.transaction_id}${d.transaction_status ? ` (${d.transaction_status})` : ""}`
    : "—";
  const reason = text("td", null);
  reason.append(text("strong", d.reason || "?"));
  if (d.error) reason.append(text("div", d.error, "muted small wrap"));
  const request = d.request_id ? requestIdButton(d.request_id) : text("span", "—");
  const action = document.createElement("td");
  const button = text("button", "Requeue");
  button.type = "button";
  button.dataset.action = "requeue";
  button.disabled = Boolean(d.requeue_refusal);
  button.title = d.requeue_refusal
    ? REFUSALS[d.requeue_refusal] || d.requeue_refusal
    : "put the message back on the queue";
  button.addEventListener("click", () => requeue(d.id, button));
  action.append(button);
  if (d.requeue_refusal) {
    const why = text("div", REFUSALS[d.requeue_refusal] || d.requeue_refusal, "muted small wrap");
    why.dataset.refusal = d.requeue_refusal;
    action.append(why);
  }
  tr.append(
    text("td", shortTime(d.dead_at)),
    reason,
    text("td", transaction, "mono"),
    text("td", d.attempts ?? "—", "num"),
    wrapCell(request),
    text("td", d.message_kept ? "kept" : "not kept"),
    action,
  );
  return tr;
}

async function requeue(id, button) {
  button.disabled = true;
  button.textContent = "Requeueing…";
  const result = await call("POST", `/_admin/dead/${encodeURIComponent(id)}/requeue`, {
    headers: PC_HEADERS,
    show: true,
  });
  if (result.error) showError(result.status, result.error);
  else clearError();
  await refreshQueue();
}

function startQueue() {
  refreshQueue();
  setInterval(refreshQueue, QUEUE_POLL_MS);
}
