// A js-libp2p v3 peer for `ocapnet bench --js`: the baseline pair of the echo
// workloads. It speaks ocapnet's wire protocol as the interop peer (peer.mjs)
// does — protocol "whatever", varint length-prefixed JSON frames (lpStream,
// maxDataLength 1 MiB), the handshake/handshakeAck exchange, sequenced
// envelopes {"seq","ack"?,"method","params"} and standalone {"ack":N} after
// 50 ms — but persists nothing and never retransmits: it is what a pair
// that does no durable work costs. Frames queued in one tick go out in one
// writeV; event lines queued in one tick go out in one stdout write.
//
// Driven like `ocapnet peer --stdio`: {"op":"send","to","method","params",
// "hints"} lines on stdin; {"event":"ready"|"reserved"|"message"|"error",…}
// lines on stdout.
//
//   node benchpeer.mjs [--seed HEX] [--listen MA]... [--reserve RELAY_MA]...
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { randomBytes, randomUUID } from 'node:crypto'
import readline from 'node:readline'

const PROTOCOL = 'whatever'
const MAX_SIZE = 1024 * 1024
const ACK_DELAY_MS = 50

const o = { listen: [], reserve: [], seed: randomBytes(32).toString('hex') }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  if (a === '--seed') o.seed = argv[++i]
  else if (a === '--listen') o.listen.push(argv[++i])
  else if (a === '--reserve') o.reserve.push(argv[++i])
  else throw new Error(`unknown argument ${a}`)
}

// Output: lines queued in one tick, one write.
let lines = []
function out (obj) {
  if (lines.length === 0) setImmediate(flushOut)
  lines.push(JSON.stringify(obj))
}
function flushOut () {
  const text = lines.join('\n') + '\n'
  lines = []
  process.stdout.write(text)
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const incarnationId = randomUUID()
const privateKey = await generateKeyPairFromSeed('Ed25519', Buffer.from(o.seed, 'hex'))
const node = await createLibp2p({
  privateKey,
  addresses: { listen: [...o.listen, ...o.reserve.map(r => `${r}/p2p-circuit`)] },
  transports: [tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() },
  connectionGater: { denyDialMultiaddr: () => false }
})

// Per peer: the channel, sequence state and the frames waiting for this tick.
const peers = new Map()
function peer (id) {
  let p = peers.get(id)
  if (!p) {
    p = { lp: null, stream: null, dialing: null, hints: [], nextSeq: 0, highest: 0, ackTimer: null, queue: [], flushing: false }
    peers.set(id, p)
  }
  return p
}

function register (id, lp, stream) {
  const p = peer(id)
  if (p.stream && p.stream !== stream) p.stream.close().catch(() => {})
  p.lp = lp
  p.stream = stream
  readLoop(id, lp, stream)
  if (p.queue.length > 0) scheduleFlush(id, p)
}

async function readLoop (id, lp, stream) {
  try {
    for (;;) onFrame(id, dec.decode((await lp.read()).subarray()))
  } catch (err) {
    const p = peer(id)
    if (p.stream === stream) { p.lp = null; p.stream = null }
  }
}

const isHandshake = (m, method) => m !== null && typeof m === 'object' && m.method === method && typeof m?.params?.incarnationId === 'string'

await node.handle(PROTOCOL, async (stream, connection) => {
  const id = connection.remotePeer.toString()
  const lp = lpStream(stream, { maxDataLength: MAX_SIZE })
  try {
    const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(10000) })).subarray()))
    if (!isHandshake(m, 'handshake')) throw new Error(`Expected handshake, got: ${m?.method ?? 'unknown'}`)
    await lp.write(enc.encode(JSON.stringify({ method: 'handshakeAck', params: { incarnationId } })))
    register(id, lp, stream)
  } catch (err) {
    out({ event: 'error', error: 'inbound handshake: ' + String(err.message) })
    stream.abort?.(err)
  }
}, { runOnLimitedConnection: true })

async function dial (id) {
  const p = peer(id)
  let last = new Error('no hints')
  for (const h of p.hints) {
    try {
      const stream = await node.dialProtocol(multiaddr(h), PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10000) })
      const lp = lpStream(stream, { maxDataLength: MAX_SIZE })
      await lp.write(enc.encode(JSON.stringify({ method: 'handshake', params: { incarnationId } })))
      const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(10000) })).subarray()))
      if (!isHandshake(m, 'handshakeAck')) throw new Error(`Expected handshakeAck, got: ${m?.method ?? 'unknown'}`)
      register(id, lp, stream)
      return
    } catch (err) { last = err }
  }
  throw last
}

function scheduleFlush (id, p) {
  if (p.flushing) return
  p.flushing = true
  queueMicrotask(() => flush(id, p))
}

// flush writes the frames queued for the peer in one writeV (dialling first
// if there is no channel).
async function flush (id, p) {
  try {
    if (!p.lp) {
      p.dialing ??= dial(id).finally(() => { p.dialing = null })
      await p.dialing
    }
    while (p.queue.length > 0) {
      const frames = p.queue
      p.queue = []
      await p.lp.writeV(frames.map(t => enc.encode(t)))
    }
  } catch (err) {
    out({ event: 'error', error: 'send: ' + String(err.message) })
  } finally {
    p.flushing = false
  }
}

function onFrame (id, text) {
  const m = JSON.parse(text)
  const p = peer(id)
  if (m.seq === undefined) return // standalone ack (nothing is retained to release)
  if (m.seq <= p.highest) return // duplicate
  p.highest = m.seq
  if (p.ackTimer === null) {
    p.ackTimer = setTimeout(() => {
      p.ackTimer = null
      p.queue.push(JSON.stringify({ ack: p.highest }))
      scheduleFlush(id, p)
    }, ACK_DELAY_MS)
  }
  out({ event: 'message', from: id, seq: m.seq, method: m.method, params: m.params })
}

function send (id, method, params) {
  const p = peer(id)
  const env = { seq: ++p.nextSeq }
  if (p.highest > 0) env.ack = p.highest
  env.method = method
  if (params !== undefined) env.params = params
  if (p.ackTimer !== null) { clearTimeout(p.ackTimer); p.ackTimer = null } // piggybacked
  p.queue.push(JSON.stringify(env))
  scheduleFlush(id, p)
}

readline.createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (line) => {
  try {
    const req = JSON.parse(line)
    if (req.op !== 'send') throw new Error(`unknown op ${req.op}`)
    const p = peer(req.to)
    for (const h of req.hints ?? []) if (!p.hints.includes(h)) p.hints.push(h)
    send(req.to, req.method, req.params)
  } catch (err) {
    out({ event: 'error', error: String(err.message) })
  }
}).on('close', () => {})

out({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), incarnationId })
if (o.reserve.length > 0) {
  const deadline = Date.now() + 20000
  while (Date.now() < deadline && !node.getMultiaddrs().some(a => String(a).includes('p2p-circuit'))) await new Promise(resolve => setTimeout(resolve, 50))
  out({ event: 'reserved', addrs: node.getMultiaddrs().map(String) })
}
process.on('SIGTERM', async () => { await node.stop(); process.exit(0) })
