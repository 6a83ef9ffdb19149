// The webhooks panel: what the development receiver (webhook-sink) got,
// newest first, through the gateway's /_sink/webhooks (forwarded, like
// /_pc/, only to this page on this machine): time, event type, transaction,
// its status in the event, and whether the signature checked out.
"use strict";

const WEBHOOKS_POLL_MS = 1000;

async function refreshWebhooks() {
  const status = $("#webhooks-status");
  const table = $("#webhooks-table");
  let body = null;
  try {
    const response = await fetch("/_sink/webhooks", { headers: PC_HEADERS, cache: "no-store" });
    body = response.ok ? await response.json() : null;
  } catch {
    body = null;
  }
  if (!body || !Array.isArray(body.data)) {
    status.className = "status-line warn";
    status.dataset.state = "unreachable";
    status.textContent = "webhook-sink does not answer (is it running?)";
    return;
  }
  status.className = "status-line";
  status.dataset.state = "ok";
  status.textContent = `${body.data.length} received (the sink keeps the latest ones).`;
  const rows = body.data.map((delivery) => {
    const tr = document.createElement("tr");
    tr.dataset.webhookId = delivery.headers["webhook-id"] || "";
    tr.dataset.transaction = delivery.transaction_id || "";
    tr.dataset.type = delivery.event_type || "";
    tr.dataset.verified = String(delivery.verified);
    const verified = text("td", delivery.verified ? "✔" : "✘", delivery.verified ? "ok" : "warn");
    verified.title = delivery.verified ? "signature verified" : "signature did not verify";
    tr.append(
      text("td", (delivery.received_at || "").replace("T", " ").replace("Z", "")),
      text("td", delivery.event_type || "—"),
      text("td", delivery.transaction_id || "—"),
      text("td", delivery.status || "—"),
      text("td", delivery.headers["webhook-id"] || "—"),
      verified,
    );
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = text("td", "nothing yet: create a payment", "muted");
    td.colSpan = 6;
    tr.append(td);
    rows.push(tr);
  }
  table.tBodies[0].replaceChildren(...rows);
}

function startWebhooks() {
  refreshWebhooks();
  setInterval(refreshWebhooks, WEBHOOKS_POLL_MS);
}
