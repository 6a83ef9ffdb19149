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
//
// DASHBOARD_SCREENSHOT=<file.png> saves a screenshot at the end of `payment`.
// CHROMIUM overrides the browser (default /usr/bin/chromium).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [gateway, scenario] = process.argv.slice(2);
if (!gateway || !["payment", "expiry", "processes"].includes(scenario)) {
  console.error("usage: node dashboard.mjs <gateway URL> payment|expiry|processes");
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

try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  // Nothing may be fetched from anywhere but the gateway.
  page.on("request", (request) => {
    if (!request.url().startsWith(origin)) foreign.push(request.url());
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));

  step(`open ${gateway}/_dashboard/`);
  const opened = await page.goto(`${gateway}/_dashboard/`);
  check(opened && opened.ok(), `GET /_dashboard/ answered ${opened && opened.status()}: ${opened && (await opened.text())}`);
  await page.waitForSelector("#get-token");

  if (scenario === "payment") {
    // Process panel: no process-compose in this run, and it says so.
    await page.waitForSelector('#pc-status[data-state="unreachable"]');
    const pc = await page.textContent("#pc-status");
    check(pc.includes("process-compose is not reachable"), `process panel says: ${pc}`);
    check(await page.isHidden("#process-table"), "process table shown without process-compose");
    step("process panel: process-compose not reachable, said plainly");

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
      ["sandbox", ["psp-sandbox"]],
      ["services", ["auth-api", "core-api-0", "core-api-1", "psp-connector-0", "psp-connector-1"]],
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
    for (const selector of ["#pc-status", "#token-state", "#call-error", "#raw-request", "#raw-response", "#tx-status"]) {
      const shown = await page.textContent(selector, { timeout: 1_000 }).catch(() => "(missing)");
      console.error(`${selector}: ${shown}`);
    }
  }
  throw error;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
