// An independent js-libp2p v3 peer that follows the ocap-kernel wire
// conventions (reference §2, §4.1), written from the reference document for
// ocapnet's interop tests. It is driven by JSON lines on stdin and reports
// JSON lines on stdout, like `ocapnet peer --stdio`.
//
//   node peer.mjs --seed HEX [--state FILE] [--listen MA]... [--reserve RELAY_MA]... [--relay-server]
//                 [--upstream [--time-scale F] [--up-NAME N]...]
//
// --upstream (or OCAPNET_JS_UPSTREAM=1) switches to the upstream-behaviour
// mode of upstream.mjs: the documented behaviour of the real JavaScript
// ocap-kernel, weaknesses included (docs/INTEROP.md). Without it the peer is
// the well-behaved one described here.
//
// Wire: protocol "whatever"; varint length-prefixed UTF-8 JSON frames
// (lpStream, maxDataLength 1 MiB); a handshake/handshakeAck exchange carrying
// incarnation IDs on every new stream; sequenced envelopes
// {"seq","ack"?,"method","params"} with cumulative acks, standalone {"ack":N}
// after 50 ms, go-back-N retransmission on an ack timer. As upstream, the
// sequence state (and the incarnation ID) persist in --state, so a restart
// with the same state file is the same incarnation.
import readline from 'node:readline'
import { loadState, makeNode, startSeqAck } from './seqack.mjs'

function parseArgs (argv) {
  const o = { listen: [], reserve: [], relayServer: false, state: '', seed: '', upstream: process.env.OCAPNET_JS_UPSTREAM === '1', timeScale: 1, up: {} }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--seed') o.seed = argv[++i]
    else if (a === '--upstream') o.upstream = true
    else if (a === '--time-scale') o.timeScale = Number(argv[++i])
    else if (a.startsWith('--up-')) o.up[a.slice(5)] = Number(argv[++i])
    else if (a === '--state') o.state = argv[++i]
    else if (a === '--listen') o.listen.push(argv[++i])
    else if (a === '--reserve') o.reserve.push(argv[++i])
    else if (a === '--relay-server') o.relayServer = true
    else throw new Error(`unknown argument ${a}`)
  }
  if (!/^[0-9a-f]{64}$/.test(o.seed)) throw new Error('--seed must be 64 lower-case hex digits')
  return o
}

// OCAPNET_JS_TRACE=1 copies every event to stderr with a timestamp (the Go
// tests print stderr when they fail).
const trace = process.env.OCAPNET_JS_TRACE === '1'
const out = (obj) => {
  const line = JSON.stringify(obj)
  process.stdout.write(line + '\n')
  if (trace) process.stderr.write(new Date().toISOString() + ' ' + line + '\n')
}
const opts = parseArgs(process.argv.slice(2))

// Persistent state, as upstream keeps it in its kernel store.
const { state, save } = loadState(opts.state)
const node = await makeNode(opts)

// Upstream-behaviour mode: upstream.mjs registers its own protocol handler
// and serves the control commands.
let upstream = null
let remote, send, channel, raw
if (opts.upstream) {
  const { startUpstream, upstreamConfig } = await import('./upstream.mjs')
  upstream = await startUpstream({ node, cfg: upstreamConfig(opts.timeScale, opts.up), state, save, out, knownRelays: opts.reserve })
} else {
  ({ remote, send, channel, raw } = await startSeqAck({
    node,
    state,
    save,
    out,
    onMessage: (id, m) => { out({ event: 'message', from: id, seq: m.seq, method: m.method, params: m.params }); return true }
  }))
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', async (line) => {
  let req
  try { req = JSON.parse(line) } catch (err) { out({ event: 'error', error: 'malformed JSON: ' + err.message }); return }
  try {
    if (upstream) {
      await upstream.op(req)
      return
    }
    if (req.to) {
      const r = remote(req.to)
      for (const h of req.hints ?? []) if (!r.hints.includes(h)) r.hints.push(h)
    }
    switch (req.op) {
      case 'send':
        await send(req.to, req.method, req.params)
        break
      case 'sendUntil': // numbered stream: params [seq] until nextSendSeq = upTo, delayMs apart
        while (remote(req.to).nextSendSeq < req.upTo) {
          await send(req.to, 'n', [remote(req.to).nextSendSeq + 1])
          if (req.delayMs) await new Promise(resolve => setTimeout(resolve, req.delayMs))
        }
        out({ event: 'sentUntil', to: req.to, upTo: req.upTo })
        break
      case 'resume': // after a restart: resend the persisted window now
        await channel(req.to)
        break
      case 'raw':
        await raw(req.to, req.hex)
        break
      case 'state':
        out({ event: 'state', peer: req.to, ...remote(req.to), pending: Object.keys(remote(req.to).pending).length })
        break
      default:
        out({ event: 'error', error: `unknown op ${req.op}` })
    }
  } catch (err) {
    out({ event: 'error', op: req.op, error: String(err.message) })
  }
})

out({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), incarnationId: state.incarnationId })
if (opts.reserve.length > 0) {
  // Report the circuit address once the reservation is in place.
  const deadline = Date.now() + 10000
  while (Date.now() < deadline && !node.getMultiaddrs().some(a => String(a).includes('p2p-circuit'))) await new Promise(r => setTimeout(r, 50))
  out({ event: 'reserved', addrs: node.getMultiaddrs().map(String) })
}
process.on('SIGTERM', async () => {
  if (upstream) await upstream.stop()
  else await node.stop()
  process.exit(0)
})
