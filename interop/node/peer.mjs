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
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { circuitRelayTransport, circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import readline from 'node:readline'
import { envelope, isHandshake } from './wire.mjs'

const PROTOCOL = 'whatever'
const MAX_SIZE = 1024 * 1024
const ACK_DELAY_MS = 50
const ACK_TIMEOUT_MS = 1000

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
const enc = new TextEncoder()
const dec = new TextDecoder()

// Persistent state, as upstream keeps it in its kernel store.
let state = { incarnationId: randomUUID(), peers: {} }
if (opts.state && fs.existsSync(opts.state)) state = JSON.parse(fs.readFileSync(opts.state, 'utf8'))
function save () {
  if (!opts.state) return
  fs.writeFileSync(opts.state + '.tmp', JSON.stringify(state))
  fs.renameSync(opts.state + '.tmp', opts.state)
}
save()
function remote (id) {
  state.peers[id] ??= { nextSendSeq: 0, highestReceivedSeq: 0, pending: {}, incarnation: null, hints: [] }
  return state.peers[id]
}

const privateKey = await generateKeyPairFromSeed('Ed25519', Buffer.from(opts.seed, 'hex'))
const services = { identify: identify(), ping: ping() }
if (opts.relayServer) services.relay = circuitRelayServer({ reservations: { applyDefaultLimit: false } })
const node = await createLibp2p({
  privateKey,
  addresses: { listen: [...opts.listen, ...opts.reserve.map(r => `${r}/p2p-circuit`)] },
  transports: [tcp(), webSockets(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services,
  connectionGater: { denyDialMultiaddr: () => false }
})

// Channels: one registered lpStream per peer.
const channels = new Map() // peerId string -> { lp, stream }
const ackTimers = new Map()
const retransmitTimers = new Map()

function register (id, lp, stream) {
  const old = channels.get(id)
  channels.set(id, { lp, stream })
  if (old && old.stream !== stream) old.stream.close().catch(() => {})
  readLoop(id, lp, stream)
  flushWindow(id)
}

async function readLoop (id, lp, stream) {
  try {
    for (;;) {
      const frame = await lp.read()
      onFrame(id, dec.decode(frame.subarray()))
    }
  } catch (err) {
    out({ event: 'readError', peer: id, name: err.name, error: String(err.message) })
    if (channels.get(id)?.stream === stream) channels.delete(id)
    stream.abort?.(err)
  }
}

function onHandshakeIncarnation (id, inc) {
  const r = remote(id)
  const restarted = r.incarnation !== null && r.incarnation !== inc
  if (restarted) {
    out({ event: 'restarted', peer: id, previous: r.incarnation, current: inc })
    r.nextSendSeq = 0; r.highestReceivedSeq = 0; r.pending = {}
  }
  r.incarnation = inc
  save()
}

// Upstream-behaviour mode: upstream.mjs registers its own protocol handler
// and serves the control commands.
let upstream = null
if (opts.upstream) {
  const { startUpstream, upstreamConfig } = await import('./upstream.mjs')
  upstream = await startUpstream({ node, cfg: upstreamConfig(opts.timeScale, opts.up), state, save, out, knownRelays: opts.reserve })
}

if (!upstream) await node.handle(PROTOCOL, async (stream, connection) => {
  const id = connection.remotePeer.toString()
  const lp = lpStream(stream, { maxDataLength: MAX_SIZE })
  try {
    const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(10000) })).subarray()))
    if (!isHandshake(m, 'handshake')) throw new Error(`Expected handshake, got: ${m?.method ?? 'unknown'}`)
    await lp.write(enc.encode(JSON.stringify({ method: 'handshakeAck', params: { incarnationId: state.incarnationId } })))
    onHandshakeIncarnation(id, m.params.incarnationId)
    register(id, lp, stream)
  } catch (err) {
    out({ event: 'handshakeError', peer: id, error: String(err.message) })
    stream.abort?.(err)
  }
}, { runOnLimitedConnection: true })

async function dial (id) {
  const r = remote(id)
  const targets = [...r.hints.map(h => multiaddr(h)), peerIdFromString(id)]
  let last
  for (const t of targets) {
    try {
      const stream = await node.dialProtocol(t, PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10000) })
      const lp = lpStream(stream, { maxDataLength: MAX_SIZE })
      await lp.write(enc.encode(JSON.stringify({ method: 'handshake', params: { incarnationId: state.incarnationId } })))
      const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(10000) })).subarray()))
      if (!isHandshake(m, 'handshakeAck')) throw new Error(`Expected handshakeAck, got: ${m?.method ?? 'unknown'}`)
      onHandshakeIncarnation(id, m.params.incarnationId)
      return { lp, stream }
    } catch (err) { last = err }
  }
  throw last
}

const dialing = new Map()
async function channel (id) {
  const c = channels.get(id)
  if (c) return c
  if (!dialing.has(id)) {
    dialing.set(id, dial(id).then(({ lp, stream }) => { register(id, lp, stream); return channels.get(id) }).finally(() => dialing.delete(id)))
  }
  return dialing.get(id)
}

async function writeFrame (id, text) {
  const c = await channel(id)
  try {
    await c.lp.write(enc.encode(text), { signal: AbortSignal.timeout(10000) })
  } catch (err) {
    if (channels.get(id) === c) channels.delete(id)
    throw err
  }
}

function onFrame (id, text) {
  let m
  try { m = JSON.parse(text) } catch (err) { out({ event: 'frameError', peer: id, error: String(err.message) }); return }
  const r = remote(id)
  if (typeof m.ack === 'number') handleAck(id, m.ack)
  if (m.seq === undefined) return // standalone ack
  if (!Number.isInteger(m.seq) || m.seq < 1) { out({ event: 'frameError', peer: id, error: 'invalid message seq' }); return }
  scheduleAck(id)
  if (m.seq <= r.highestReceivedSeq) return // duplicate
  // Deliver, then record: a crash in between delivers it again (as
  // upstream, where applying and recording are one transaction, nothing is
  // lost). As upstream, gaps are accepted (W1).
  out({ event: 'message', from: id, seq: m.seq, method: m.method, params: m.params })
  r.highestReceivedSeq = m.seq
  save()
}

function scheduleAck (id) {
  if (ackTimers.has(id)) return
  ackTimers.set(id, setTimeout(() => {
    ackTimers.delete(id)
    const h = remote(id).highestReceivedSeq
    if (h > 0) writeFrame(id, JSON.stringify({ ack: h })).catch(() => {})
  }, ACK_DELAY_MS))
}

function handleAck (id, n) {
  const r = remote(id)
  let advanced = false
  for (const s of Object.keys(r.pending).map(Number).sort((a, b) => a - b)) {
    if (s > n) break
    delete r.pending[s]
    out({ event: 'acked', to: id, seq: s })
    advanced = true
  }
  if (advanced) { save(); armRetransmit(id, true) }
}

function armRetransmit (id, restart) {
  if (restart && retransmitTimers.has(id)) { clearTimeout(retransmitTimers.get(id)); retransmitTimers.delete(id) }
  if (retransmitTimers.has(id) || Object.keys(remote(id).pending).length === 0) return
  retransmitTimers.set(id, setTimeout(() => { retransmitTimers.delete(id); flushWindow(id) }, ACK_TIMEOUT_MS))
}

let flushing = new Set()
async function flushWindow (id) {
  if (flushing.has(id)) return
  flushing.add(id)
  try {
    const r = remote(id)
    for (const s of Object.keys(r.pending).map(Number).sort((a, b) => a - b)) {
      if (r.pending[s] === undefined) continue
      await writeFrame(id, r.pending[s])
    }
  } catch (err) {
    out({ event: 'sendError', peer: id, error: String(err.message) })
  } finally {
    flushing.delete(id)
    armRetransmit(id, false)
  }
}

async function send (id, method, params) {
  const r = remote(id)
  const seq = ++r.nextSendSeq
  const text = envelope(seq, r.highestReceivedSeq, method, params)
  r.pending[seq] = text
  save()
  clearTimeout(ackTimers.get(id)); ackTimers.delete(id) // piggybacked
  out({ event: 'sent', to: id, seq })
  armRetransmit(id, false)
  await writeFrame(id, text).catch(err => out({ event: 'sendError', peer: id, seq, error: String(err.message) }))
  return seq
}

// Raw frames for the malformed/oversize tests: a fresh stream with a valid
// handshake, then the given bytes as they are.
async function raw (id, hex) {
  const { lp, stream } = await dial(id)
  stream.send(Buffer.from(hex, 'hex')) // past the length-prefixed writer, as it is
  out({ event: 'rawSent', peer: id })
  // Read until the peer ends the stream (or 5 s pass): aborting at once
  // would reset it before the peer has read what we sent.
  const signal = AbortSignal.timeout(5000)
  try {
    for (;;) {
      const f = await lp.read({ signal })
      out({ event: 'rawReply', peer: id, text: dec.decode(f.subarray()) })
    }
  } catch (err) {
    out({ event: 'rawClosed', peer: id, name: err.name, error: String(err.message) })
  }
  stream.abort?.(new Error('done'))
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
