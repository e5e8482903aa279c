// The well-behaved seq/ack peer of peer.mjs as a module, so that other
// drivers (interop/endo/endpoint.mjs) can put a kernel layer on top of it:
// a js-libp2p v3 node, persisted sequence state, the handshake carrying
// incarnation IDs, sequenced envelopes with cumulative acks, standalone acks
// after 50 ms and go-back-N retransmission on an ack timer (reference §2).
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
import { envelope, isHandshake } from './wire.mjs'

const PROTOCOL = 'whatever'
const MAX_SIZE = 1024 * 1024
const ACK_DELAY_MS = 50
const ACK_TIMEOUT_MS = 1000
const enc = new TextEncoder()
const dec = new TextDecoder()

// loadState reads the persistent state (as upstream keeps it in its kernel
// store) from file ('' : in memory only). save writes it atomically.
export function loadState (file) {
  let state = { incarnationId: randomUUID(), peers: {} }
  if (file && fs.existsSync(file)) state = JSON.parse(fs.readFileSync(file, 'utf8'))
  const save = () => {
    if (!file) return
    fs.writeFileSync(file + '.tmp', JSON.stringify(state))
    fs.renameSync(file + '.tmp', file)
  }
  save()
  return { state, save }
}

// makeNode creates the js-libp2p node for a 64-hex-digit key seed.
export async function makeNode ({ seed, listen = [], reserve = [], relayServer = false }) {
  const privateKey = await generateKeyPairFromSeed('Ed25519', Buffer.from(seed, 'hex'))
  const services = { identify: identify(), ping: ping() }
  if (relayServer) services.relay = circuitRelayServer({ reservations: { applyDefaultLimit: false } })
  return createLibp2p({
    privateKey,
    addresses: { listen: [...listen, ...reserve.map(r => `${r}/p2p-circuit`)] },
    transports: [tcp(), webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services,
    connectionGater: { denyDialMultiaddr: () => false }
  })
}

// startSeqAck serves the wire protocol on node. onMessage(id, m) is called
// for each new sequenced envelope, in seq order; it returns true to record
// it as received (the caller saves its own effects in the same save), or
// false to leave it unrecorded and unacknowledged (the sender retransmits
// it). onRestarted(id, previous, current) is called when a peer's
// incarnation changed, after its seq state was reset.
export async function startSeqAck ({ node, state, save, out, onMessage, onRestarted = () => {} }) {
  const remote = (id) => {
    state.peers[id] ??= { nextSendSeq: 0, highestReceivedSeq: 0, pending: {}, incarnation: null, hints: [] }
    return state.peers[id]
  }

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
    const previous = r.incarnation
    const restarted = previous !== null && previous !== inc
    if (restarted) {
      out({ event: 'restarted', peer: id, previous, current: inc })
      r.nextSendSeq = 0; r.highestReceivedSeq = 0; r.pending = {}
    }
    r.incarnation = inc
    if (restarted) onRestarted(id, previous, inc)
    save()
  }

  await node.handle(PROTOCOL, async (stream, connection) => {
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
    if (m.seq <= r.highestReceivedSeq) { scheduleAck(id); return } // duplicate
    // Deliver, then record: a crash in between delivers it again (as
    // upstream, where applying and recording are one transaction, nothing is
    // lost). As upstream, gaps are accepted (W1).
    if (!onMessage(id, m)) return
    scheduleAck(id)
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

  const flushing = new Set()
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

  // enqueue makes the next sequenced envelope durable in the window (saved
  // with whatever else the caller changed) and returns a function that
  // writes it; send does both.
  function enqueue (id, method, params) {
    const r = remote(id)
    const seq = ++r.nextSendSeq
    const text = envelope(seq, r.highestReceivedSeq, method, params)
    r.pending[seq] = text
    clearTimeout(ackTimers.get(id)); ackTimers.delete(id) // piggybacked
    out({ event: 'sent', to: id, seq })
    return async () => {
      armRetransmit(id, false)
      await writeFrame(id, text).catch(err => out({ event: 'sendError', peer: id, seq, error: String(err.message) }))
      return seq
    }
  }

  async function send (id, method, params) {
    const write = enqueue(id, method, params)
    save()
    return write()
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

  return { remote, channel, send, enqueue, raw }
}
