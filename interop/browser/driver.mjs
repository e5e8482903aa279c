// Drives headless Chromium for ocapnet's browser interop tests with
// playwright-core (no browser download: the Debian chromium package is used
// through executablePath). JSON lines on stdin:
//   {"id":N,"op":"open","page":P,"url":U}           open page P at U
//   {"id":N,"op":"eval","page":P,"js":EXPR}          await EXPR in page P
//   {"id":N,"op":"screenshot","page":P,"url":U,"wait":TEXT,"path":F}
// and JSON lines on stdout: {"id":N,"result":…} or {"id":N,"error":…};
// the first line is {"event":"ready"}.
import { chromium } from 'playwright-core'
import readline from 'node:readline'

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const browser = await chromium.launch({
  executablePath: process.env.OCAPNET_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Not --disable-quic: WebTransport needs QUIC. Playwright gives every
  // launch a fresh, temporary user data directory.
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--ignore-certificate-errors']
})
const context = await browser.newContext()
const pages = new Map()

async function handle (req) {
  switch (req.op) {
    case 'open': {
      const page = await context.newPage()
      page.on('console', m => process.stderr.write(`[${req.page}] ${m.text()}\n`))
      page.on('pageerror', e => process.stderr.write(`[${req.page}] page error: ${e.message}\n`))
      await page.goto(req.url)
      await page.waitForFunction(() => window.ocapReady === true, null, { timeout: 20000 })
      pages.set(req.page, page)
      return true
    }
    case 'eval': {
      const page = pages.get(req.page)
      if (!page) throw new Error(`no page ${req.page}`)
      return await page.evaluate(req.js)
    }
    case 'screenshot': {
      const page = await context.newPage()
      await page.goto(req.url)
      await page.waitForFunction(t => document.body.innerText.includes(t), req.wait, { timeout: 20000 })
      await page.screenshot({ path: req.path, fullPage: true })
      const text = await page.evaluate(() => document.body.innerText)
      await page.close()
      return text
    }
    default:
      throw new Error(`unknown op ${req.op}`)
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', async (line) => {
  let req
  try { req = JSON.parse(line) } catch (err) { out({ error: `malformed JSON: ${err.message}` }); return }
  try {
    out({ id: req.id, result: await handle(req) ?? null })
  } catch (err) {
    out({ id: req.id, error: String(err.message) })
  }
})
rl.on('close', async () => { await browser.close(); process.exit(0) })
out({ event: 'ready' })
