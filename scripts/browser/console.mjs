// The operator console in real headless Chromium (Playwright's `playwright-core`, the system's chromium),
// against a live `ebb dev` prepared by scripts/console_fixtures.py:
//   - the demo admin logs in; an approver sets its account up through its one-time link (password and a
//     TOTP key, whose codes this script computes as an authenticator app would) and logs in with a code;
//   - the admin makes refund links from an order (the customer's page is driven in another context),
//     finds a refund by its request id, is refused approving its own refund; the approver approves it
//     with a comment and rejects another with a comment; the admin sends a failed webhook delivery again;
//   - the refunds and audit CSV files are downloaded (the refunds one is checked against the API by
//     console_fixtures.py check).
// Every page is seen at 360 px and at 1280 px: any console error, CSP violation or horizontal scrolling
// fails the run. Screenshots go to OUT_DIR.
//
//   node scripts/browser/console.mjs FIXTURES_JSON SETUP_URL OUT_DIR
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [fixturesFile, setupUrl, outDir] = process.argv.slice(2);
const fx = JSON.parse(readFileSync(fixturesFile, "utf8"));
mkdirSync(outDir, { recursive: true });
const base = fx.console_url.replace(/\/console$/, "");
const CUSTOMER_ADDRESS = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
const APPROVER = "approver@console.example";
const APPROVER_PASSWORD = "a long approver passphrase";
const WIDTHS = [360, 1280];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`  ok: ${what}`);
}

// RFC 6238 (SHA-1, 30 s, 6 digits), as an authenticator app computes it.
function base32(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, "")) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Buffer.from(out);
}
function totp(key, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac("sha1", key).update(msg).digest();
  const o = h[19] & 15;
  return String(((h.readUInt32BE(o) & 0x7fffffff) % 1000000)).padStart(6, "0");
}
let lastStep = 0;
async function nextCode(key) {
  for (;;) {
    const now = Math.floor(Date.now() / 30000);
    const step = Math.max(now - 1, lastStep + 1);
    if (step <= now + 1) { lastStep = step; return totp(key, step); }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US", acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  // Refusals (403, 404, 422) are answered on purpose; Chromium logs every non-2xx document load.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (403|404|422)/.test(m.text())) problems.push(`${name} console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${name} page error: ${e.message}`));
  page.problems = problems;
  return page;
}

/// Looks at the current page at every width: no horizontal scrolling, a screenshot each.
async function shots(page, step) {
  for (const w of WIDTHS) {
    await page.setViewportSize({ width: w, height: w === 360 ? 780 : 900 });
    const noScroll = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    check(noScroll, `${step}: no horizontal scrolling at ${w}px`);
    await page.screenshot({ path: `${outDir}/${w}-${step}.png`, fullPage: true });
  }
  check(page.problems.length === 0, `${step}: no console errors or CSP violations ${page.problems.join("; ")}`);
}

async function submitAsCustomer(url) {
  const page = await newPage("customer");
  await page.goto(url);
  await page.fill("#address", CUSTOMER_ADDRESS);
  await page.waitForFunction(() => document.getElementById("address-check").classList.contains("ok"));
  await page.click("button[type=submit]");
  await page.waitForSelector("[data-testid=address-chunks]");
  await page.click("text=Confirm and submit");
  await page.waitForSelector("[data-testid=status-title]");
  check(page.problems.length === 0, "the customer's pages had no errors");
  await page.context().close();
}

async function makeLink(page, amount, step) {
  await page.goto(`${base}/console/orders/${fx.order_id}`);
  await page.fill("#link-amount", amount);
  await page.click("[data-testid=make-link]");
  const url = (await page.textContent("[data-testid=link-url]")).trim();
  check(url.includes("/refund-link?token="), `${step}: the link is shown once`);
  await shots(page, step);
  return url;
}

/// The id of the newest refund on the order's page.
async function newestRefundOfOrder(page) {
  await page.goto(`${base}/console/orders/${fx.order_id}`);
  return (await page.textContent("[data-testid=refund-rows] tbody tr:first-child a")).trim();
}

let failures = 0;
try {
  // The demo admin (no second factor in ebb dev, which the page says).
  const admin = await newPage("admin");
  await admin.goto(`${base}/console/dashboard`);
  check(admin.url().endsWith("/console/login"), "no page without a session");
  check((await admin.textContent("[data-testid=dev-notice]")).includes("without a second factor"), "dev mode is said");
  await shots(admin, "01-login");
  await admin.fill("#email", fx.admin_email);
  await admin.fill("#password", fx.admin_password);
  await admin.click("button[type=submit]");
  await admin.waitForURL(/\/console\/dashboard$/);
  check((await admin.textContent("[data-testid=who]")).includes("(admin)"), "the admin is signed in");
  check((await admin.textContent("[data-testid=wallets]")).includes("ETH_USDT"), "the dashboard shows the hot wallets");
  await shots(admin, "02-dashboard");

  // The approver sets its account up and logs in with a TOTP code.
  const approver = await newPage("approver");
  await approver.goto(setupUrl);
  const key = base32((await approver.textContent("[data-testid=totp-key]")).trim());
  await shots(approver, "03-setup");
  await approver.fill("#password", APPROVER_PASSWORD);
  await approver.fill("#repeat", APPROVER_PASSWORD);
  await approver.fill("#code", await nextCode(key));
  await approver.click("button[type=submit]");
  check((await approver.textContent("[data-testid=message-title]")).includes("ready"), "the account is set up");
  await approver.goto(`${base}/console/login`);
  await approver.fill("#email", APPROVER);
  await approver.fill("#password", APPROVER_PASSWORD);
  await approver.fill("#code", await nextCode(key));
  await approver.click("button[type=submit]");
  await approver.waitForURL(/\/console\/dashboard$/);
  check((await approver.textContent("[data-testid=who]")).includes("(approver)"), "the approver is signed in with TOTP");

  // The admin makes a link from the order; the customer gives an address; the refund waits for approval.
  await admin.goto(`${base}/console/orders`);
  await shots(admin, "04-orders");
  const url1 = await makeLink(admin, "5", "05-order-link-made");
  await submitAsCustomer(url1);
  const own = await newestRefundOfOrder(admin);
  await admin.goto(`${base}/console/refunds/${own}`);
  check((await admin.textContent("[data-testid=approval-status]")).startsWith("Pending"), "the refund waits for approval");
  check(await admin.isVisible("[data-testid=own-refund]"), "the admin is told it cannot approve its own refund");
  const requestId = (await admin.textContent("[data-testid=request-id]")).trim();
  await admin.click("[data-testid=approve]");
  check((await admin.textContent("[data-testid=message-text]")).includes("initiator cannot approve"), "approving one's own refund is refused");
  await shots(admin, "06-own-refund-refused");

  // Find it by request id.
  await approver.goto(`${base}/console/refunds`);
  await approver.fill("#f-request", requestId);
  await approver.click("form[data-testid=refund-filters] button[type=submit]");
  check((await approver.textContent("[data-testid=count]")).startsWith("1 "), "the search by request id finds one refund");
  check((await approver.textContent("[data-testid=refund-rows] tbody")).includes(own), "and it is the one");
  await shots(approver, "07-refunds-search");

  // The approver approves it with a comment, from the queue.
  await approver.goto(`${base}/console/approvals`);
  await shots(approver, "08-approvals");
  await approver.click(`a[href="/console/refunds/${own}"]`);
  await approver.fill("#approve-comment", "matches the support ticket");
  await approver.click("[data-testid=approve]");
  await approver.waitForURL(new RegExp(`/console/refunds/${own}$`));
  check((await approver.textContent("[data-testid=approval-status]")).startsWith("Approved"), "approved by another operator");
  check((await approver.textContent("[data-testid=timeline]")).includes("refund.approve (matches the support ticket)"), "the timeline names the approval");
  await shots(approver, "09-refund-approved");

  // A second link; the approver rejects it with a comment.
  const url2 = await makeLink(admin, "3", "10-second-link");
  await submitAsCustomer(url2);
  const second = await newestRefundOfOrder(admin);
  await approver.goto(`${base}/console/refunds/${second}`);
  await approver.fill("#reject-comment", "duplicate request");
  await approver.click("[data-testid=reject]");
  await approver.waitForURL(new RegExp(`/console/refunds/${second}$`));
  check((await approver.textContent("[data-testid=refund-status]")) === "Failed", "rejected: the refund failed");
  check((await approver.textContent("[data-testid=failed-reason]")).includes("duplicate request"), "with the comment as its reason");
  await shots(approver, "11-refund-rejected");

  // The admin sends a failed webhook delivery again.
  await admin.goto(`${base}/console/refunds/${second}`);
  await admin.waitForSelector("[data-testid=retry-delivery]");
  await admin.click("[data-testid=retry-delivery]");
  await admin.waitForURL(new RegExp(`/console/refunds/${second}$`));
  check(await admin.isVisible("[data-testid=deliveries]"), "back on the refund after sending again");
  await shots(admin, "12-delivery-sent-again");

  // A refund to an address the customer gave support, from the order page.
  await admin.goto(`${base}/console/orders/${fx.order_id}`);
  await admin.fill("#refund-amount", "1.5");
  await admin.fill("#refund-address", CUSTOMER_ADDRESS);
  await admin.click("[data-testid=make-refund]");
  await admin.waitForURL(/\/console\/refunds\/R/);
  check((await admin.textContent("[data-testid=refund-amount]")).trim() === "1.5 USDT", "a refund to an address from the order");
  await shots(admin, "12b-direct-refund");

  // The exports.
  await admin.goto(`${base}/console/refunds?merchant_id=${fx.merchant_id}`);
  await shots(admin, "13-refunds-of-merchant");
  const [refundsCsv] = await Promise.all([admin.waitForEvent("download"), admin.click("[data-testid=export-refunds]")]);
  await refundsCsv.saveAs(`${outDir}/refunds.csv`);
  check(readFileSync(`${outDir}/refunds.csv`, "utf8").startsWith("refund_id,"), "the refunds CSV downloads");
  await admin.goto(`${base}/console/audit`);
  await shots(admin, "14-audit");
  const [auditCsv] = await Promise.all([admin.waitForEvent("download"), admin.click("[data-testid=export-audit]")]);
  await auditCsv.saveAs(`${outDir}/audit.csv`);
  const audit = readFileSync(`${outDir}/audit.csv`, "utf8");
  for (const action of ["login", "operator.setup", "link.create", "refund.approve", "refund.reject", "webhook.retry"]) {
    check(audit.includes(`,${action},`), `the audit CSV has ${action}`);
  }
  await admin.goto(`${base}/console/operators`);
  await shots(admin, "15-operators");

  // Merchants, balances and their charts; the balance changes CSV.
  await admin.goto(`${base}/console/merchants`);
  await shots(admin, "16-merchants");
  await admin.goto(`${base}/console/merchants/${fx.merchant_id}`);
  check((await admin.locator("svg.chart").count()) >= 2, "a balance chart and a refund volume chart");
  await shots(admin, "17-merchant-balances");
  const [changes] = await Promise.all([admin.waitForEvent("download"), admin.click("[data-testid=export-balance-changes]")]);
  await changes.saveAs(`${outDir}/balance_changes.csv`);
  const changeRows = readFileSync(`${outDir}/balance_changes.csv`, "utf8").trim().split("\r\n");
  const lastBalance = changeRows[changeRows.length - 1].split(",")[6];
  check(lastBalance === (await admin.textContent("[data-testid=balance-ETH_USDT]")).trim(), "the balance changes end at the balance shown");

  // Webhooks: the unreachable endpoint and its failed deliveries; held pay-ins.
  await admin.goto(`${base}/console/webhooks`);
  check((await admin.textContent("[data-testid=endpoint-rows]")).includes("127.0.0.1:9/unreachable"), "the failing endpoint is listed");
  await shots(admin, "18-webhooks");
  await admin.click("a[href^='/console/webhooks/']:has-text('unreachable')");
  await shots(admin, "19-endpoint");
  await admin.goto(`${base}/console/held`);
  await shots(admin, "20-held");

  // Reconciliation: run, the journal balances, and the CSV lists what the page lists.
  await admin.goto(`${base}/console/reconciliation`);
  await admin.click("[data-testid=run-reconciliation]");
  await admin.waitForSelector("[data-testid=reconcile-tokens]");
  check((await admin.locator("[data-testid=ledger-ok]").count()) === 1, "the journal balances");
  await shots(admin, "21-reconciliation");
  const [reconciliation] = await Promise.all([admin.waitForEvent("download"), admin.click("[data-testid=reconciliation-csv]")]);
  await reconciliation.saveAs(`${outDir}/reconciliation.csv`);
  const reconRows = readFileSync(`${outDir}/reconciliation.csv`, "utf8").trim().split("\r\n");
  check(reconRows[0].startsWith("chain_id,kind,token_id,subject,"), "the reconciliation CSV has its header");
  check(reconRows.length - 1 === (await admin.locator("tr.difference").count()), `the CSV lists the differences the page shows: ${reconRows.join(" | ")}`);

  // Chinese: the switch in the header, the pages in it, and back.
  await admin.goto(`${base}/console/dashboard`);
  await admin.click("[data-testid=lang-switch]");
  check((await admin.getAttribute("html", "lang")) === "zh-CN", "the console switched to Chinese");
  check((await admin.textContent("h1")).trim() === "概览", "the dashboard's title is Chinese");
  await shots(admin, "22-zh-dashboard");
  await admin.goto(`${base}/console/refunds`);
  await shots(admin, "23-zh-refunds");
  await admin.click("[data-testid=refund-rows] tbody a");
  check((await admin.textContent("h1")).startsWith("退款"), "a refund's page is Chinese");
  await shots(admin, "24-zh-refund");
  await admin.goto(`${base}/console/reconciliation?run=1`);
  await shots(admin, "25-zh-reconciliation");
  await admin.click("[data-testid=lang-switch]");
  check((await admin.getAttribute("html", "lang")) === "en", "and back to English");
  writeFileSync(`${outDir}/done`, "ok\n");
} catch (e) {
  failures += 1;
  console.error(e);
} finally {
  await browser.close();
}
process.exit(failures ? 1 : 0);
