// Drives headless Chromium over the peer daemon's status page for
// daemon/status_browser_test.go, with playwright-core (from
// interop/browser's packages; the Debian chromium package is the browser).
// Input: one JSON object in the environment variable STATUS_TEST:
//   {"chromium": PATH, "playwright": PATH of playwright-core/index.mjs,
//    "login": one-time link, "base": API URL, "wait": [TEXT, …],
//    "widths": [1280, 390], "shots": DIR}
// Output on stdout: one JSON object {"pages": {WIDTH: {"text", "scrollWidth",
// "innerWidth", "shot"}}, "fullError": TEXT, "errorSummary": TEXT,
// "unauthenticated": TEXT}, or {"error": TEXT}.
const cfg = JSON.parse(process.env.STATUS_TEST)
const { chromium } = await import(cfg.playwright)

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
})
const out = { pages: {} }
try {
  const context = await browser.newContext({ viewport: { width: cfg.widths[0], height: 900 } })
  const page = await context.newPage()
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`))
  page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`))
  await page.goto(cfg.login)
  const hasAll = (wanted) => wanted.every((w) => document.body.innerText.includes(w))
  await page.waitForFunction(hasAll, cfg.wait, { timeout: 20000 })
  for (const width of cfg.widths) {
    await page.setViewportSize({ width, height: width > 800 ? 900 : 844 })
    // Two refreshes at this width, so that throughput has been measured.
    const before = await page.evaluate(() => document.getElementById('peers').innerHTML)
    await page.waitForFunction((b) => document.getElementById('peers').innerHTML !== b, before, { timeout: 10000 })
    await page.waitForTimeout(1100)
    const shot = `${cfg.shots}/status-${width}.png`
    await page.screenshot({ path: shot, fullPage: true })
    out.pages[width] = await page.evaluate(() => ({
      text: document.body.innerText,
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth
    }))
    out.pages[width].shot = shot
  }
  // The one-line error opens to the full text.
  const summary = page.locator('#peers details summary').first()
  out.errorSummary = await summary.innerText()
  await summary.click()
  out.fullError = await page.locator('#peers details[open] pre').first().innerText()
  await context.close()

  const fresh = await browser.newContext()
  const p2 = await fresh.newPage()
  await p2.goto(cfg.base + '/')
  await p2.waitForFunction(() => document.body.innerText.includes('Not signed in'), null, { timeout: 10000 })
  out.unauthenticated = await p2.evaluate(() => document.body.innerText)
  await fresh.close()
} catch (err) {
  out.error = String(err && err.stack || err)
}
await browser.close()
process.stdout.write(JSON.stringify(out) + '\n')
