// A browser ocap-kernel peer for ocapnet's interop tests, bundled with
// esbuild and driven by interop/browser/driver.mjs in headless Chromium.
// It speaks the ocap-kernel wire conventions (reference §2): protocol
// "whatever", varint length-prefixed JSON frames, the incarnation handshake on
// every new stream, sequenced envelopes with acks. State is in memory (one
// page = one incarnation).
import { createLibp2p } from 'libp2p'
import { webSockets } from '@libp2p/websockets'
import { webTransport } from '@libp2p/webtransport'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'

const PROTOCOL = 'whatever'
const enc = new TextEncoder()
const dec = new TextDecoder()
const incarnationId = crypto.randomUUID()

let node
const channels = new Map() // peer -> { lp, stream }
const remotes = new Map() // peer -> { nextSendSeq, highest }
const received = [] // { from, seq, method, params, remoteAddr }
const acked = [] // { to, seq }
const log = []

function remote (id) {
  if (!remotes.has(id)) remotes.set(id, { nextSendSeq: 0, highest: 0, pending: new Map() })
  return remotes.get(id)
}

function isHandshake (m, method) {
  return m !== null && typeof m === 'object' && m.method === method && typeof m?.params?.incarnationId === 'string'
}

function register (id, lp, stream, connection) {
  channels.set(id, { lp, stream, connection })
  ;(async () => {
    try {
      for (;;) onFrame(id, dec.decode((await lp.read()).subarray()), connection)
    } catch (err) {
      log.push(`read ${id}: ${err.name} ${err.message}`)
      if (channels.get(id)?.stream === stream) channels.delete(id)
    }
  })()
}

function onFrame (id, text, connection) {
  const m = JSON.parse(text)
  const r = remote(id)
  if (typeof m.ack === 'number') {
    for (const s of [...r.pending.keys()]) if (s <= m.ack) { r.pending.delete(s); acked.push({ to: id, seq: s }) }
  }
  if (m.seq === undefined) return
  if (m.seq > r.highest) {
    r.highest = m.seq
    received.push({ from: id, seq: m.seq, method: m.method, params: m.params, remoteAddr: connection.remoteAddr.toString() })
  }
  setTimeout(() => write(id, JSON.stringify({ ack: r.highest })).catch(() => {}), 50)
}

async function dial (id, hints, strict = false) {
  let last
  const targets = hints.map(h => multiaddr(h))
  if (!strict) targets.push(peerIdFromString(id))
  for (const t of targets) {
    try {
      const stream = await node.dialProtocol(t, PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(15000) })
      const lp = lpStream(stream, { maxDataLength: 1024 * 1024 })
      await lp.write(enc.encode(JSON.stringify({ method: 'handshake', params: { incarnationId } })))
      const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(15000) })).subarray()))
      if (!isHandshake(m, 'handshakeAck')) throw new Error(`Expected handshakeAck, got: ${m?.method}`)
      const connection = node.getConnections(peerIdFromString(id)).find(c => c.streams?.includes?.(stream)) ?? node.getConnections(peerIdFromString(id))[0]
      register(id, lp, stream, connection)
      return
    } catch (err) {
      last = err
      log.push(`dial ${t}: ${err.name} ${err.message}`)
    }
  }
  throw last
}

async function write (id, text, hints = [], strict = false) {
  if (!channels.has(id)) await dial(id, hints, strict)
  await channels.get(id).lp.write(enc.encode(text))
}

window.ocap = {
  // start creates the libp2p node; relays are reserved on (their
  // /p2p-circuit addresses are listened on), plus /webrtc for browser peers.
  async start ({ relays = [] } = {}) {
    node = await createLibp2p({
      addresses: { listen: [...relays.map(r => `${r}/p2p-circuit`), '/webrtc'] },
      transports: [webSockets(), webTransport(), webRTC({ rtcConfiguration: { iceServers: [] } }), webRTCDirect({ rtcConfiguration: { iceServers: [] } }), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() },
      connectionGater: { denyDialMultiaddr: () => false }
    })
    await node.handle(PROTOCOL, async (stream, connection) => {
      const id = connection.remotePeer.toString()
      const lp = lpStream(stream, { maxDataLength: 1024 * 1024 })
      try {
        const m = JSON.parse(dec.decode((await lp.read({ signal: AbortSignal.timeout(15000) })).subarray()))
        if (!isHandshake(m, 'handshake')) throw new Error(`Expected handshake, got: ${m?.method}`)
        await lp.write(enc.encode(JSON.stringify({ method: 'handshakeAck', params: { incarnationId } })))
        register(id, lp, stream, connection)
      } catch (err) {
        log.push(`inbound ${id}: ${err.message}`)
      }
    }, { runOnLimitedConnection: true })
    if (relays.length > 0) {
      const deadline = Date.now() + 15000
      while (Date.now() < deadline && !node.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit'))) await new Promise(r => setTimeout(r, 50))
    }
    return { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) }
  },
  addrs: () => node.getMultiaddrs().map(String),
  // send writes a sequenced message; with strict, only the hints are
  // dialled (no fallback to other known addresses).
  async send (to, method, params, hints = [], strict = false) {
    const r = remote(to)
    const seq = ++r.nextSendSeq
    const env = { seq }
    if (r.highest > 0) env.ack = r.highest
    env.method = method
    env.params = params
    const text = JSON.stringify(env)
    r.pending.set(seq, text)
    await write(to, text, hints, strict)
    const c = channels.get(to)
    return { seq, remoteAddr: c?.connection?.remoteAddr?.toString() ?? '' }
  },
  received: () => received,
  acked: () => acked,
  log: () => log,
  connections: () => node.getConnections().map(c => ({
    peer: c.remotePeer.toString(), addr: c.remoteAddr.toString(), limited: !!c.limits,
    multiplexer: c.multiplexer ?? '', encryption: c.encryption ?? '', direct: c.direct ?? null,
    streams: (c.streams ?? []).map(s => s.protocol ?? '')
  }))
}
window.ocapReady = true
