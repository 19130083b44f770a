// The refund page in real headless Chromium (Playwright's `playwright-core`, the system's chromium):
// for each of a phone (360 px) and a desktop (1280 px) viewport, one link made through Cobo's SDK is
// opened, the pre-filled payer and the warnings checked, a mistyped (wrong EIP-55 checksum) address
// refused both while typing and by the server, a good one confirmed in chunks and submitted, and the
// page followed (it refreshes itself) until the sandbox chain has paid the refund. A screenshot of each
// step goes to OUT_DIR. Any console error, CSP violation or horizontal scrolling fails the run.
//
//   node scripts/browser/refund_link.mjs LINKS_JSON OUT_DIR
// LINKS_JSON is what scripts/make_refund_links.py prints (two links at least).
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [linksFile, outDir] = process.argv.slice(2);
const { payer, links } = JSON.parse(readFileSync(linksFile, "utf8"));
mkdirSync(outDir, { recursive: true });

const GOOD = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
const TYPO = "0xfB6916095Ca1df60bB79Ce92cE3Ea74c37c5d359"; // one letter's case flipped
const viewports = [
  { name: "360", width: 360, height: 780 },
  { name: "1280", width: 1280, height: 900 },
];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`  ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
let failures = 0;
try {
  for (const [i, vp] of viewports.entries()) {
    const link = links[i];
    console.log(`viewport ${vp.width}px: ${link.refund_id}`);
    const context = await browser.newContext({ viewport: { width: vp.width, height: vp.height }, locale: "en-US" });
    const page = await context.newPage();
    const problems = [];
    // The refused typo is answered 422 on purpose; Chromium logs every non-2xx document load.
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().includes("status of 422")) problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    const shot = async (step) => {
      const noScroll = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
      check(noScroll, `${step}: no horizontal scrolling at ${vp.width}px`);
      await page.screenshot({ path: `${outDir}/${vp.name}-${step}.png`, fullPage: true });
    };

    if (vp.name === "360") {
      // The same page in Chinese, chosen by the switch.
      await page.goto(`${link.url}&lang=zh`);
      check((await page.locator("html").getAttribute("lang")) === "zh-CN", "the switch gives Chinese");
      check((await page.textContent("[data-testid=warnings]")).includes("仅限原付款人"), "Chinese warnings");
      await shot("00-form-zh");
    }

    await page.goto(link.url);
    check((await page.inputValue("#address")) === payer, "the original payer is pre-filled");
    const warnings = await page.locator("[data-testid=warnings] li").allTextContents();
    check(warnings.length === 4, "four warnings");
    for (const w of ["original payer only", "Only USDT on Ethereum", "custodial", "private key"]) {
      check(warnings.some((t) => t.includes(w)), `warning: ${w}`);
    }
    check((await page.textContent("[data-testid=amount]")).trim() === "10 USDT", "amount and token");
    check((await page.textContent("[data-testid=network]")).includes("Ethereum"), "network");
    check((await page.getAttribute("#address", "aria-describedby")).includes("address-check"), "the field is described by its check");
    await shot("01-form");

    // Typing a wrong checksum: the live check says so, and so does the server on Continue.
    await page.fill("#address", TYPO);
    await page.waitForFunction(() => document.getElementById("address-check").textContent.includes("EIP-55"));
    check((await page.getAttribute("#address", "aria-invalid")) === "true", "marked invalid while typing");
    await shot("02-typo-live");
    await page.click("button[type=submit]");
    await page.waitForLoadState();
    check((await page.textContent("#address-check")).includes("EIP-55"), "the server refuses it too");
    await shot("03-typo-server");

    // A good address: confirm in chunks, then submit.
    await page.fill("#address", GOOD);
    await page.waitForFunction(() => document.getElementById("address-check").classList.contains("ok"));
    await page.click("button[type=submit]");
    await page.waitForSelector("[data-testid=address-chunks]");
    const chunks = await page.locator(".chunk").allTextContents();
    check(chunks.join("") === GOOD, "the confirmation shows the whole address in chunks");
    await shot("04-confirm");
    await page.click("text=Confirm and submit");
    await page.waitForSelector("[data-testid=status-title]");
    const title = await page.textContent("[data-testid=status-title]");
    check(/Address received|on its way|Refund sent/.test(title), `submitted: ${title}`);
    check((await page.textContent("[data-testid=submitted-address]")).trim() === GOOD, "the submitted address is shown");
    await shot("05-submitted");

    // The page refreshes itself; the sandbox mines a block a second.
    await page.waitForFunction(
      () => document.querySelector("[data-testid=status-title]")?.textContent.includes("Refund sent"),
      null,
      { timeout: 60_000, polling: 500 },
    );
    check((await page.locator("[data-testid=tx-hash]").count()) >= 1, "the transaction is shown");
    check((await page.locator("a", { hasText: "Return to the merchant" }).getAttribute("href")) === "https://shop.example.com/orders/42", "return link");
    await shot("06-paid");

    // The used link, opened again, says so.
    await page.goto(link.url);
    check((await page.textContent("[data-testid=status-title]")).includes("Refund sent"), "the used link shows the result");

    if (problems.length) {
      console.log(problems.join("\n"));
      failures += problems.length;
    }
    await context.close();
  }
} finally {
  await browser.close();
}
if (failures) {
  console.error(`${failures} browser problems`);
  process.exit(1);
}
console.log(`browser run complete; screenshots in ${outDir}`);
