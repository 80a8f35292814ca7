// The approval page in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core, which never downloads a browser): an approver
// signs in with an API key, a held call's request appears live, clicking
// Approve lets the call through, and the history shows who decided. Screenshots
// (desktop and phone) are saved under test-artifacts/approvals/.
//
// .ci/run installs chromium; without it this test is skipped locally and fails in CI.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type Browser, chromium } from "playwright-core";
import { ARTIFACTS, KEYS, type Serve, startServe, stop, tempDir, writeServeConfig } from "./helpers.js";

const CHROMIUM = process.env.WARDEN_CHROMIUM ?? "/usr/bin/chromium";
const available = existsSync(CHROMIUM);
if (!available && process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);

interface ToolResult {
  isError?: boolean;
  content: { type: string; text: string }[];
}

describe("the approval page in headless Chromium", { skip: available ? false : `${CHROMIUM} not installed` }, () => {
  let t: ReturnType<typeof tempDir>;
  let gw: Serve;
  let browser: Browser;
  let client: Client;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    t = tempDir();
    gw = await startServe(await writeServeConfig(t.dir));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    client = new Client({ name: "web-test-agent", version: "1.0.0" }, { capabilities: {} });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp/fs`), {
        requestInit: { headers: { Authorization: `Bearer ${KEYS.agent}` } },
      }),
    );
  });
  after(async () => {
    await client?.close().catch(() => {});
    await browser?.close().catch(() => {});
    if (gw) await stop(gw.child);
    t?.remove();
  });

  it("a pending request appears live; clicking Approve lets the call through; history shows the decision", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${gw.url}/approvals`);
    await page.fill("#token", KEYS.bob);
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("#who strong");
    assert.equal(await page.textContent("#who strong"), "bob");
    assert.equal(await page.isHidden("#signin"), true, "the sign-in form goes away");
    await page.waitForSelector("#pending .empty");

    // The agent calls a tool that needs approval while the page is open: the request arrives live (SSE).
    const file = join(t.dir, "workspace", "from-the-page.txt");
    const call = client.callTool({
      name: "write_file",
      arguments: { path: file, content: "approved in a browser" },
    }) as Promise<ToolResult>;
    const card = page.locator("#pending article.card");
    await card.waitFor({ timeout: 10_000 });
    const id = await card.getAttribute("data-id");
    assert.match(id ?? "", /^apr_/);
    assert.match((await card.textContent()) ?? "", /write_file on fs/);
    assert.match((await card.textContent()) ?? "", /approved in a browser/);
    assert.equal(await page.textContent("#pending-count"), "1");
    await page.fill(`article[data-id="${id}"] input[aria-label=Reason]`, "checked in the browser");
    await page.screenshot({ path: join(ARTIFACTS, "01-pending-desktop.png"), fullPage: true });
    assert.equal(existsSync(file), false);

    await page.click(`button[data-action=approve][data-id="${id}"]`);
    const result = await call;
    assert.notEqual(result.isError, true, result.content.map((c) => c.text).join());
    assert.equal(readFileSync(file, "utf8"), "approved in a browser");

    await page.waitForSelector("#pending .empty");
    await page.click("nav button[data-tab=history]");
    const done = page.locator(`#history article[data-id="${id}"]`);
    await done.waitFor();
    // Locator waits, not waitForFunction: a string predicate needs eval, which the page's CSP forbids.
    await page.locator(`#history article[data-id="${id}"]`, { hasText: "Call outcome: success" }).waitFor();
    const history = (await done.textContent()) ?? "";
    assert.match(history, /approved/i);
    assert.match(history, /By bob \(api-key:bob\)/);
    assert.match(history, /checked in the browser/);
    await page.screenshot({ path: join(ARTIFACTS, "02-history-desktop.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it("works on a phone: deny from a 390×844 viewport, deep link to the request", async () => {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const page = await context.newPage();
    const file = join(t.dir, "workspace", "from-the-phone.txt");
    const call = client.callTool({
      name: "write_file",
      arguments: { path: file, content: "no" },
    }) as Promise<ToolResult>;
    // Wait for the request, then open the page at its link, as a webhook or a progress message gives it.
    let id = "";
    for (let i = 0; i < 100 && !id; i++) {
      const res = await fetch(`${gw.url}/api/approvals?state=pending`, {
        headers: { authorization: `Bearer ${KEYS.bob}` },
      });
      id = ((await res.json()) as { requests: { id: string }[] }).requests[0]?.id ?? "";
      if (!id) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(id);
    await page.goto(`${gw.url}/approvals#${id}`);
    await page.fill("#token", KEYS.bob);
    await page.tap("#signin button[type=submit]");
    const card = page.locator(`article.card.focus[data-id="${id}"]`);
    await card.waitFor();
    const box = await card.boundingBox();
    assert.ok(box && box.width <= 390, "the card fits the phone's width");
    const deny = page.locator(`button[data-action=deny][data-id="${id}"]`);
    const denyBox = await deny.boundingBox();
    assert.ok(denyBox && denyBox.height >= 44, "touch-sized buttons");
    await page.screenshot({ path: join(ARTIFACTS, "03-pending-phone.png"), fullPage: true });
    await deny.tap();
    const result = await call;
    assert.equal(result.isError, true);
    assert.match(result.content.map((c) => c.text).join(), /denied by bob/);
    assert.equal(existsSync(file), false);
    await page.tap("nav button[data-tab=history]");
    await page.locator(`#history article[data-id="${id}"]`).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "04-history-phone.png"), fullPage: true });
    await context.close();
  });

  it("refuses a wrong key and shows why", async () => {
    const page = await browser.newPage();
    await page.goto(`${gw.url}/approvals`);
    await page.fill("#token", "wk_not_a_valid_key_at_all_000000");
    await page.click("#signin button[type=submit]");
    await page.locator("#signin-error", { hasText: /\S/ }).waitFor();
    assert.match((await page.textContent("#signin-error")) ?? "", /unauthorized/);
    assert.equal(await page.isHidden("#app"), true);
    await page.screenshot({ path: join(ARTIFACTS, "05-signin-refused.png") });
    await page.close();
  });
});
