// Drives the atp dashboard in Debian's Chromium (never a downloaded
// browser): load, filter by status, open a task, read its log, re-enqueue
// through the confirmation dialog, and check that a message holding
// <script> is shown as text. Usage: node dashboard.mjs BASE_URL
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.setDefaultTimeout(15000);

  // The dashboard loads and goes live.
  await page.goto(base + "/");
  await page.waitForSelector('body[data-page="dashboard"]');
  await page.waitForSelector('#live-status[data-state="live"]');
  const finished = await page.textContent('[data-count="FINISHED"]');
  assert.equal(finished.trim(), "3", "three FINISHED tasks counted");

  // Filter by status: only FAILED rows remain.
  await Promise.all([
    page.waitForURL(/status=FAILED/),
    page.selectOption("select#f-status", "FAILED"),
  ]);
  await page.waitForSelector('body[data-page="dashboard"]');
  const statuses = await page.$$eval("table#tasks tbody tr.task", (rows) =>
    rows.map((r) => r.dataset.taskStatus));
  assert.deepEqual(statuses, ["FAILED"], "the filter shows only FAILED tasks");

  // Open the task and read its log.
  await Promise.all([
    page.waitForSelector('body[data-page="task"]'),
    page.click('tr.task[data-identifier="fail-1"] a.task-link'),
  ]);
  const title = await page.getAttribute("h1#task-title", "data-identifier");
  assert.equal(title, "fail-1");
  const log = await page.$$eval("ol#timeline li.log-entry", (items) =>
    items.map((i) => i.dataset.status));
  assert.ok(log.includes("ACCEPTED") && log.includes("FAILED"), `log: ${log}`);

  // Re-enqueue, accepting the confirmation dialog.
  let dialog = "";
  page.once("dialog", (d) => { dialog = d.message(); d.accept(); });
  await Promise.all([
    page.waitForNavigation(),
    page.click("form#reenqueue-form button[type=submit]"),
  ]);
  assert.ok(dialog.length > 0, "a confirmation was asked");
  await page.waitForFunction(() =>
    document.querySelectorAll('ol#timeline li.log-entry[data-status="ACCEPTED"]').length >= 2);

  // A message holding <script> is text, not markup.
  await page.goto(base + "/tasks/Idle/xss-1");
  await page.waitForSelector('body[data-page="task"]');
  const message = await page.textContent("#timeline li.log-entry .log-message");
  assert.equal(message, "<script>window.__atpXss = 1</script><b>bold?</b>");
  assert.equal(await page.$$eval("#timeline script, #timeline b", (n) => n.length), 0);
  assert.equal(await page.evaluate(() => window.__atpXss), undefined, "the script did not run");

  assert.deepEqual(errors, [], "no errors in the page");
  console.log("dashboard ok");
} finally {
  await browser.close();
}
