// Upstream-behaviour mode of the interop peer (`node peer.mjs --upstream`).
//
// The default mode of peer.mjs is a well-behaved peer. This mode instead
// reproduces what the real JavaScript ocap-kernel does on the wire and in
// time, weaknesses included, as documented in
// shared/reference/upstream-protocol.md ("ref §N"; its weaknesses are "Wn").
// It is written from that document (no upstream code), on the same libraries
// upstream uses (js-libp2p v3, @libp2p/utils lpStream), so that library
// behaviour such as concurrent reads on one lpStream is the real one.
//
// Two layers, as upstream (ref §1.1):
//   - transport: P/transport.ts initTransport (ref §1.3, §2.3, §4.2, §5),
//     messages are opaque strings;
//   - kernel: K/RemoteHandle.ts seq/ack, pending window, retransmission and
//     give-up (ref §2.6–§2.8), persisted in --state like the kernel store.
// The c-list/RRef translation of the kernel (ref §2.5) is not modelled: a
// delivered command is reported on stdout.
//
// Not modelled (nothing in the interop tests reaches them): wake detection
// (ref §5.10), stale-peer cleanup (ref §5.11, 15 min), URL redemption,
// WebRTC's SCTP cause-12 close detection (ref §5.9; no WebRTC in Node here).
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { envelope, isHandshake } from './wire.mjs'

const PROTOCOL = 'whatever' // ref §2.1
const enc = new TextEncoder()
const dec = new TextDecoder()

// Upstream's defaults (ref §1.7). Times marked scaled are multiplied by
// --time-scale (default 1), so tests can run upstream's timing ratios fast;
// every value can also be set on its own with --up-<name> <number>.
export const DEFAULTS = {
  ackTimeoutMs: 10000, // K/RemoteHandle ACK_TIMEOUT_MS; scaled
  handshakeTimeoutMs: 10000, // P/constants HANDSHAKE_TIMEOUT_MS; scaled
  writeTimeoutMs: 10000, // DEFAULT_WRITE_TIMEOUT_MS; scaled
  dialTimeoutMs: 30000, // openChannelOnce's shared AbortSignal.timeout; scaled
  connRateMax: 10, // maxConnectionAttemptsPerMinute (ref §5.8)
  connRateWindowMs: 60000, // its window; scaled
  msgRateMax: 100, // maxMessagesPerSecond (ref §5.8)
  msgRateWindowMs: 1000, // its window; not scaled (a rate, not a timer)
  reconnectBaseMs: 500, // reconnectionBaseDelayMs (ref §5.1); scaled
  reconnectMaxMs: 10000, // reconnectionMaxDelayMs; scaled
  dialRetryBaseMs: 500, // openChannelWithRetry's library defaults (ref §4.2, W14); scaled
  dialRetryMaxMs: 10000, // scaled
  inactivityTimeoutMs: 120000, // streamInactivityTimeoutMs, floor 5000 (ref §5.12); scaled
  maxRetryAttempts: 0, // 0 = infinite (ref §1.7), for the send's dial retry and the reconnection loop
  maxPending: 200, // MAX_PENDING_MESSAGES (ref §2.6)
  maxRetries: 3, // MAX_RETRIES (ref §2.6)
  delayedAckMs: 50, // DELAYED_ACK_MS; not scaled
  maxConnections: 100, // maxConcurrentConnections
  maxMessageSize: 1024 * 1024 // maxMessageSizeBytes
}
const SCALED = ['ackTimeoutMs', 'handshakeTimeoutMs', 'writeTimeoutMs', 'dialTimeoutMs', 'connRateWindowMs',
  'reconnectBaseMs', 'reconnectMaxMs', 'dialRetryBaseMs', 'dialRetryMaxMs', 'inactivityTimeoutMs']

export function upstreamConfig (scale, overrides) {
  const cfg = { ...DEFAULTS }
  for (const k of SCALED) cfg[k] = Math.max(1, Math.round(cfg[k] * scale))
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in DEFAULTS)) throw new Error(`unknown upstream option ${k}`)
    cfg[k] = v
  }
  return cfg
}

// Error types, matched by name as upstream does (ref §5.6, §7).
class NamedError extends Error {
  constructor (message, data) { super(message); this.name = this.constructor.name; this.data = data }
}
class ResourceLimitError extends NamedError {}
class IntentionalCloseError extends NamedError {}
class NetworkStoppedError extends NamedError {}
class PeerRestartedError extends NamedError {}
class AbortError extends NamedError {}
const isTerminalSendError = (e) => ['PeerRestartedError', 'IntentionalCloseError', 'NetworkStoppedError'].includes(e?.name) // ref §5.6

// ref §5.6 isRetryableNetworkError / getNetworkErrorCode.
const RETRYABLE_CODES = ['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']
function isRetryableNetworkError (e) {
  if (e?.name === 'MuxerClosedError') return true
  if (RETRYABLE_CODES.includes(e?.code)) return true
  if (typeof e?.name === 'string' && (e.name.includes('Dial') || e.name.includes('Transport'))) return true
  return typeof e?.message === 'string' && e.message.includes('NO_RESERVATION')
}
function getNetworkErrorCode (e) {
  if (typeof e?.code === 'string' && e.code !== '') return e.code
  if (typeof e?.name === 'string' && e.name !== '') return e.name
  if (typeof e?.message === 'string' && e.message.includes('NO_RESERVATION')) return 'NO_RESERVATION'
  return 'UNKNOWN'
}
const PERMANENT_CODES = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENOTFOUND', 'ENETUNREACH'] // ref §5.7
const CONSECUTIVE_ERROR_THRESHOLD = 5

// ref §5.1 calculateReconnectionBackoff: full jitter, uniform in [0, raw).
function backoff (attempt, baseMs, maxMs) {
  const base = Math.max(1, baseMs)
  const cap = Math.max(base, maxMs)
  const raw = Math.min(cap, base * 2 ** Math.max(0, attempt - 1))
  return Math.floor(Math.random() * raw)
}

// ref §5.8 SlidingWindowRateLimiter: per key, events within the window; a
// refusal records nothing.
class SlidingWindowRateLimiter {
  constructor (maxEvents, windowMs) { this.max = maxEvents; this.windowMs = windowMs; this.events = new Map() }
  checkAndRecord (key, type) {
    const now = Date.now()
    const recent = (this.events.get(key) ?? []).filter(t => t > now - this.windowMs)
    if (recent.length >= this.max) {
      this.events.set(key, recent)
      throw new ResourceLimitError(`Rate limit exceeded: ${recent.length}/${this.max} ${type} in ${this.windowMs}ms window`,
        { limitType: type, current: recent.length, limit: this.max })
    }
    recent.push(now)
    this.events.set(key, recent)
  }

  clear () { this.events.clear() }
}

// startUpstream wires both layers onto a started libp2p node and returns the
// control operations peer.mjs dispatches stdin commands to.
export async function startUpstream ({ node, cfg, state, save, out, knownRelays }) {
  const stop = new AbortController()
  const signal = stop.signal
  const self = node.peerId.toString()

  // ------------------------------------------------------------------
  // Diagnostics: per-peer counters reported by the `counts` command.
  const counters = new Map()
  const count = (id) => {
    if (!counters.has(id)) {
      counters.set(id, {
        // transport
        connAttempts: 0, // connection-rate checks passed: dials attempted (send path and reconnection loop)
        connRefused: 0, // refused by the 10-per-minute connection-rate limit
        msgRefused: 0, // refused by the 100/s message-rate limit
        streamDials: 0, // dialProtocol calls (per candidate address)
        dialFailures: 0,
        handshakesOut: 0,
        handshakesOutFailed: 0,
        handshakesIn: 0,
        handshakesInFailed: 0,
        inboundRefusedClosed: 0, // inbound streams closed unread after closeConnection
        registered: 0, // registerChannel calls
        readLoops: 0, // read loops started (one per registerChannel: W21)
        connectionLosses: 0, // handleConnectionLoss calls that cleared/reconnected
        reconnectAttempts: 0,
        reconnectRefused: 0, // reconnection attempts refused by the connection-rate limit
        sendErrors: {}, // sendRemoteMessage rejections by error name
        // kernel
        accepted: 0, // sequenced commands given a seq
        rejectedCap: 0, // refused at the pending cap
        received: 0, // distinct seqs delivered to the kernel
        duplicates: 0, // seq <= highestReceivedSeq, ignored
        gaps: 0, // deliveries that skipped seqs (accepted, W1)
        skipped: 0, // seqs skipped by those gaps
        invalidFrames: 0, // frames the kernel rejected (e.g. a stray handshake: invalid message seq)
        acked: 0, // own seqs acknowledged by the peer
        gaveUp: 0, // own seqs given up (startSeq moved past them)
        giveUps: 0, // give-up events
        retransmitRounds: 0,
        ackSendFailures: {} // standalone acks that could not be sent, by error name
      })
    }
    return counters.get(id)
  }
  const bump = (obj, key) => { obj[key] = (obj[key] ?? 0) + 1 }

  // ------------------------------------------------------------------
  // Transport state (ref §1.3): PeerStateManager, ReconnectionManager, limits.
  const peers = new Map() // id -> { channel, hints, intentionallyClosed, remoteIncarnation }
  const getState = (id) => {
    if (!peers.has(id)) peers.set(id, { channel: undefined, hints: [], intentionallyClosed: false, remoteIncarnation: undefined })
    return peers.get(id)
  }
  const recon = new Map() // id -> { reconnecting, attempt, history, permanentlyFailed }
  const rstate = (id) => {
    if (!recon.has(id)) recon.set(id, { reconnecting: false, attempt: 0, history: [], permanentlyFailed: false })
    return recon.get(id)
  }
  const clearPermanentFailure = (id) => {
    const r = rstate(id)
    if (r.permanentlyFailed) { r.permanentlyFailed = false; r.history = [] }
  }
  const resetBackoff = (id) => { const r = rstate(id); r.attempt = 0; r.history = [] } // ref §5.3
  const msgLimiter = new SlidingWindowRateLimiter(cfg.msgRateMax, cfg.msgRateWindowMs)
  const connLimiter = new SlidingWindowRateLimiter(cfg.connRateMax, cfg.connRateWindowMs)
  const activeConnections = () => [...peers.values()].filter(s => s.channel).length
  function checkConnectionLimit () { // ref §5.12
    const n = activeConnections()
    if (n >= cfg.maxConnections) {
      throw new ResourceLimitError(`Connection limit reached: ${n}/${cfg.maxConnections} concurrent connections`, { limitType: 'connection' })
    }
  }
  function connRateCheck (id) {
    try {
      connLimiter.checkAndRecord(id, 'connectionRate')
      count(id).connAttempts++
    } catch (e) {
      count(id).connRefused++
      throw e
    }
  }

  // ref §4.2 candidateAddressStrings: direct hints, then every relay twice.
  function candidates (id, hints) {
    const direct = []
    const relayHints = []
    for (const h of hints) {
      let ma
      try { ma = multiaddr(h) } catch { continue }
      const p2p = ma.getComponents().filter(c => c.name === 'p2p').map(c => c.value)
      if (p2p.length > 0 && p2p[p2p.length - 1] === id) direct.push(h)
      else relayHints.push(h)
    }
    const relays = [...relayHints, ...knownRelays.filter(r => !relayHints.includes(r))]
    return [...direct, ...relays.flatMap(r => [`${r}/p2p-circuit/webrtc/p2p/${id}`, `${r}/p2p-circuit/p2p/${id}`])]
  }

  // ref §4.2 openChannelOnce: every candidate in order under one shared
  // timeout; the stop signal is checked between attempts only.
  async function openChannelOnce (id, hints) {
    const cands = candidates(id, hints)
    const timeout = AbortSignal.timeout(cfg.dialTimeoutMs)
    let last
    for (const c of cands) {
      if (signal.aborted) throw new AbortError('Operation aborted.')
      try {
        count(id).streamDials++
        const stream = await node.dialProtocol(multiaddr(c), PROTOCOL, { signal: timeout, runOnLimitedConnection: true })
        return { msgStream: lpStream(stream, { maxDataLength: cfg.maxMessageSize }), stream, peerId: id }
      } catch (e) {
        count(id).dialFailures++
        if (e?.name === 'TooManyOutboundProtocolStreamsError') throw e
        last = e
      }
    }
    throw last ?? new Error(`unable to open channel to ${id}`)
  }

  // ref §4.2 openChannelWithRetry: retryWithBackoff with the library
  // defaults, maxAttempts = maxRetryAttempts (0 = infinite), retrying only
  // retryable errors (W3: with 0 a send can wait here for ever).
  async function openChannelWithRetry (id, hints) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await openChannelOnce(id, hints)
      } catch (e) {
        if (signal.aborted || !isRetryableNetworkError(e) || (cfg.maxRetryAttempts > 0 && attempt >= cfg.maxRetryAttempts)) throw e
        await abortableDelay(backoff(attempt, cfg.dialRetryBaseMs, cfg.dialRetryMaxMs))
      }
    }
  }

  // ref §4.2, §5.5 dialIdempotent: one in-flight dial per peer; every
  // concurrent caller gets the same promise (and the same channel object).
  const dialing = new Map()
  function dialIdempotent (id, hints, withRetry) {
    if (!dialing.has(id)) {
      const p = (withRetry ? openChannelWithRetry(id, hints) : openChannelOnce(id, hints)).finally(() => dialing.delete(id))
      dialing.set(id, p)
    }
    return dialing.get(id)
  }

  async function abortableDelay (ms) {
    if (ms <= 0) return
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
      const onAbort = () => { clearTimeout(timer); reject(new AbortError('Operation aborted.')) }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  // ref §4.2 closeChannel: close, abort if the close rejects.
  async function closeChannel (ch) {
    try { await ch.stream.close() } catch (e) { try { ch.stream.abort(e) } catch {} }
  }

  // ref §5.12 writeWithTimeout: refuse a stream that is not open; race the
  // write against the timeout (the losing write is not cancelled, W1(c)).
  async function writeWithTimeout (ch, bytes, ms) {
    if (ch.stream.status !== 'open') throw new Error(`Stream is ${ch.stream.status}, cannot write`)
    let timer
    const timeout = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`Message send timed out after ${ms}ms`)), ms) })
    const write = ch.msgStream.write(bytes)
    write.catch(() => {})
    try { await Promise.race([write, timeout]) } finally { clearTimeout(timer) }
  }

  // ref §2.3: a handshake read races a timer and is not cancelled when the
  // timer wins (W23): it stays pending on the shared lpStream.
  async function readWithTimeout (ch, ms) {
    let timer
    const timeout = new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('Handshake read timed out')), ms) })
    const read = (async () => {
      const buf = await ch.msgStream.read()
      if (!buf) throw new Error('Channel closed during handshake')
      return dec.decode(buf.subarray())
    })()
    read.catch(() => {})
    try { return await Promise.race([read, timeout]) } finally { clearTimeout(timer) }
  }

  // PeerStateManager.setRemoteIncarnation: false on first sight or the same
  // value, true when a different in-memory value was known (ref §2.3).
  function setRemoteIncarnation (id, inc) {
    const st = getState(id)
    const changed = st.remoteIncarnation !== undefined && st.remoteIncarnation !== inc
    st.remoteIncarnation = inc
    return changed
  }

  // ref §2.3 performOutboundHandshake + doOutboundHandshake.
  async function doOutboundHandshake (ch) {
    count(ch.peerId).handshakesOut++
    let inc, changed
    try {
      await writeWithTimeout(ch, enc.encode(JSON.stringify({ method: 'handshake', params: { incarnationId: state.incarnationId } })), cfg.writeTimeoutMs)
      const parsed = JSON.parse(await readWithTimeout(ch, cfg.handshakeTimeoutMs))
      if (!isHandshake(parsed, 'handshakeAck')) throw new Error(`Expected handshakeAck, got: ${parsed?.method ?? 'unknown'}`)
      inc = parsed.params.incarnationId
      changed = setRemoteIncarnation(ch.peerId, inc)
    } catch (e) {
      count(ch.peerId).handshakesOutFailed++
      out({ event: 'handshakeError', peer: ch.peerId, direction: 'outbound', error: String(e.message) })
      return { success: false, restart: false }
    }
    let kernelDetected
    try {
      kernelDetected = onIncarnationChange(ch.peerId, inc)
    } catch (e) {
      count(ch.peerId).handshakesOutFailed++
      return { success: false, restart: false }
    }
    return { success: true, restart: changed || kernelDetected }
  }

  // ref §2.3 performInboundHandshake + doInboundHandshake: the handshakeAck
  // is written before the restart decision (W20); a restart rejects the
  // stream after the ack.
  async function doInboundHandshake (ch) {
    count(ch.peerId).handshakesIn++
    let inc, changed
    try {
      const parsed = JSON.parse(await readWithTimeout(ch, cfg.handshakeTimeoutMs))
      if (!isHandshake(parsed, 'handshake')) throw new Error(`Expected handshake, got: ${parsed?.method ?? 'unknown'}`)
      inc = parsed.params.incarnationId
      await writeWithTimeout(ch, enc.encode(JSON.stringify({ method: 'handshakeAck', params: { incarnationId: state.incarnationId } })), cfg.writeTimeoutMs)
      changed = setRemoteIncarnation(ch.peerId, inc)
    } catch (e) {
      count(ch.peerId).handshakesInFailed++
      out({ event: 'handshakeError', peer: ch.peerId, direction: 'inbound', error: String(e.message) })
      return false
    }
    let kernelDetected
    try { kernelDetected = onIncarnationChange(ch.peerId, inc) } catch { return false }
    if (changed || kernelDetected) {
      out({ event: 'inboundRestartRejected', peer: ch.peerId })
      return false
    }
    return true
  }

  // ref §5.2 registerChannel: becomes the registered channel, starts a read
  // loop (another one even if this channel is already being read: several
  // concurrent sends on one dial each register it, W21), closes the
  // previously registered channel if it is a different one (W9 follows from
  // its read loop's end).
  function registerChannel (id, ch) {
    const st = getState(id)
    const previous = st.channel
    st.channel = ch
    count(id).registered++
    ch.stream.inactivityTimeout = Math.max(cfg.inactivityTimeoutMs, 5000) // ref §5.12
    readChannel(ch).catch(() => {})
    if (previous && previous !== ch) closeChannel(previous).catch(() => {})
  }

  // ref §5.2 readChannel. A read error calls handleConnectionLoss whether
  // or not this channel is still the registered one (W9: the end of a
  // replaced channel clears the live one).
  async function readChannel (ch) {
    count(ch.peerId).readLoops++
    try {
      for (;;) {
        if (signal.aborted) throw new AbortError('Operation aborted.')
        let buf
        try {
          buf = await ch.msgStream.read()
        } catch (e) {
          if (e?.errorDetail === 'sctp-failure' && e?.sctpCauseCode === 12) getState(ch.peerId).intentionallyClosed = true
          else handleConnectionLoss(ch.peerId)
          out({ event: 'readError', peer: ch.peerId, name: e?.name, error: String(e?.message) })
          throw e
        }
        if (!buf) break
        resetBackoff(ch.peerId)
        await receiveMessage(ch.peerId, dec.decode(buf.subarray()))
      }
    } finally {
      const st = getState(ch.peerId)
      if (st.channel === ch) st.channel = undefined
    }
  }

  // ref §1.2 inbound step 3–4: errors of the handler are logged only.
  async function receiveMessage (from, text) {
    try {
      await handleRemoteMessage(from, text)
    } catch (e) {
      count(from).invalidFrames++
      out({ event: 'frameError', peer: from, error: String(e.message), text: text.slice(0, 120) })
    }
  }

  // ref §5.2 reuseOrReturnChannel.
  async function reuseOrReturnChannel (id, dialed) {
    const st = getState(id)
    const existing = st.channel
    if (!existing) return dialed
    if (dialed !== existing) {
      await closeChannel(dialed)
      if (st.channel === existing) return existing
      return st.channel ?? null
    }
    return st.channel ?? null
  }

  // ref §1.3 sendRemoteMessage (the checks in order, then the dial block,
  // then the write). Every concurrent send that finds no channel records a
  // connection-rate event, joins the one dial, and runs its own outbound
  // handshake and registerChannel on the shared stream (W8).
  async function sendRemoteMessage (to, message) {
    if (signal.aborted) throw new NetworkStoppedError('Network stopped')
    const st = getState(to)
    if (st.intentionallyClosed) throw new IntentionalCloseError('Message delivery failed after intentional close')
    const bytes = enc.encode(message)
    if (bytes.byteLength > cfg.maxMessageSize) {
      throw new ResourceLimitError(`Message size ${bytes.byteLength} bytes exceeds limit of ${cfg.maxMessageSize} bytes`, { limitType: 'messageSize' })
    }
    try {
      msgLimiter.checkAndRecord(to, 'messageRate') // recorded before the send
    } catch (e) {
      count(to).msgRefused++
      throw e
    }
    let channel = st.channel
    if (!channel) {
      clearPermanentFailure(to) // a user send resurrects a failed peer (ref §5.7, #807)
      checkConnectionLimit()
      connRateCheck(to)
      try {
        channel = await dialIdempotent(to, st.hints, true)
        const resolved = await reuseOrReturnChannel(to, channel)
        if (!resolved) throw new Error('Connection race condition - retry needed')
        channel = resolved
        if (st.channel !== channel) {
          try { checkConnectionLimit() } catch (e) { await closeChannel(channel).catch(() => {}); throw e }
          const hs = await doOutboundHandshake(channel)
          if (!hs.success) {
            await closeChannel(channel)
            throw new Error('Handshake failed')
          }
          if (hs.restart) {
            await closeChannel(channel) // closed without registering (ref §2.3)
            throw new PeerRestartedError('Remote peer restarted: message not sent to avoid stale delivery')
          }
          registerChannel(to, channel)
        }
      } catch (e) {
        if (!(e instanceof PeerRestartedError)) handleConnectionLoss(to)
        throw e
      }
    }
    try {
      await writeWithTimeout(channel, bytes, cfg.writeTimeoutMs)
      resetBackoff(to)
    } catch (e) {
      handleConnectionLoss(to)
      throw e
    }
  }

  // ref §5.2 handleConnectionLoss: forget the channel (without closing it)
  // and start a reconnection session unless one runs.
  function handleConnectionLoss (id) {
    const st = getState(id)
    if (st.intentionallyClosed) return
    st.channel = undefined
    count(id).connectionLosses++
    const r = rstate(id)
    if (r.reconnecting) return
    if (r.permanentlyFailed) { onRemoteGiveUp(id); return }
    r.reconnecting = true
    r.attempt = 0
    r.history = []
    attemptReconnection(id).catch(() => { r.reconnecting = false })
  }

  // ref §5.2 attemptReconnection: infinite by default; full-jitter backoff
  // 500 ms..10 s; a connection-rate refusal does not spend an attempt.
  async function attemptReconnection (id) {
    const r = rstate(id)
    while (r.reconnecting && !signal.aborted) {
      if (r.permanentlyFailed) { r.reconnecting = false; onRemoteGiveUp(id); return }
      if (cfg.maxRetryAttempts > 0 && r.attempt >= cfg.maxRetryAttempts) { r.reconnecting = false; onRemoteGiveUp(id); return }
      r.attempt++
      try {
        await abortableDelay(backoff(r.attempt, cfg.reconnectBaseMs, cfg.reconnectMaxMs))
      } catch {
        r.reconnecting = false
        return
      }
      if (!r.reconnecting) return // closeConnection stopped it during the wait
      count(id).reconnectAttempts++
      try {
        const outcome = await tryReconnect(id)
        if (outcome === 'retry') continue
        resetBackoff(id)
        r.reconnecting = false
        return
      } catch (e) {
        if (signal.aborted) { r.reconnecting = false; return }
        if (e instanceof ResourceLimitError && e.data?.limitType === 'connectionRate') {
          count(id).reconnectRefused++
          r.attempt--
          continue
        }
        if (e instanceof ResourceLimitError && e.data?.limitType === 'connection') continue
        if (!isRetryableNetworkError(e)) {
          out({ event: 'reconnectGaveUp', peer: id, error: String(e?.message), name: e?.name })
          r.reconnecting = false
          onRemoteGiveUp(id)
          return
        }
        r.history.push(getNetworkErrorCode(e))
        if (r.history.length > CONSECUTIVE_ERROR_THRESHOLD) r.history.shift()
        if (r.history.length === CONSECUTIVE_ERROR_THRESHOLD && r.history.every(c => c === r.history[0]) && PERMANENT_CODES.includes(r.history[0])) {
          r.permanentlyFailed = true
          r.reconnecting = false
          onRemoteGiveUp(id)
          return
        }
      }
    }
    r.reconnecting = false
  }

  // ref §5.2 tryReconnect: registers even when a restart was detected (W20).
  async function tryReconnect (id) {
    connRateCheck(id)
    const st = getState(id)
    const dialed = await dialIdempotent(id, st.hints, false)
    const ch = await reuseOrReturnChannel(id, dialed)
    if (!ch) return 'retry'
    if (st.channel !== ch) {
      try { checkConnectionLimit() } catch (e) { await closeChannel(ch); throw e }
      const hs = await doOutboundHandshake(ch)
      if (!hs.success) { await closeChannel(ch); return 'retry' }
      registerChannel(id, ch)
    }
    return 'ok'
  }

  // ref §1.2 inbound, §1.3 handleInboundConnection: no rate limit on
  // inbound (W21); an intentionally closed peer's stream is closed unread.
  await node.handle(PROTOCOL, async (stream, connection) => {
    const id = connection.remotePeer.toString()
    const ch = { msgStream: lpStream(stream, { maxDataLength: cfg.maxMessageSize }), stream, peerId: id }
    if (getState(id).intentionallyClosed) {
      count(id).inboundRefusedClosed++
      closeChannel(ch).catch(() => {})
      return
    }
    try { checkConnectionLimit() } catch { closeChannel(ch).catch(() => {}); return }
    if (!await doInboundHandshake(ch)) { await closeChannel(ch); return }
    registerChannel(id, ch)
  }, { runOnLimitedConnection: true })

  // ref §5.2 trigger: peer:disconnect while no channel is registered.
  node.addEventListener('peer:disconnect', (evt) => {
    const id = evt.detail.toString()
    if (peers.has(id) && !peers.get(id).channel && !signal.aborted) handleConnectionLoss(id)
  })

  // ref §5.9 closeConnection: mark closed, forget the channel without
  // closing it (its read loop keeps delivering), stop reconnection. Nothing
  // is sent to the peer (W10).
  function closeConnection (id) {
    const st = getState(id)
    st.intentionallyClosed = true
    st.channel = undefined
    rstate(id).reconnecting = false
  }

  // ref §1.3 reconnectPeer.
  function reconnectPeer (id, hints = []) {
    const st = getState(id)
    st.intentionallyClosed = false
    if (rstate(id).reconnecting) return
    clearPermanentFailure(id)
    registerLocationHints(id, hints)
    handleConnectionLoss(id)
  }

  function registerLocationHints (id, hints) {
    const st = getState(id)
    for (const h of hints) if (!st.hints.includes(h)) st.hints.push(h)
  }

  // ref §6.1 stop: abort everything, FIN every registered channel.
  async function stopTransport () {
    stop.abort()
    for (const st of peers.values()) {
      if (st.channel) {
        st.channel.stream.close().catch(() => {})
        st.channel = undefined
      }
    }
    await Promise.race([node.stop(), new Promise(resolve => setTimeout(resolve, 2000))])
  }

  // ------------------------------------------------------------------
  // Kernel: RemoteHandle per peer (ref §2.6–§2.8), persisted in state.up.
  state.up ??= { remotes: {}, peerIncarnation: {} }
  const handles = new Map() // id -> in-memory part (timers, retryCount, hintsSent)
  const remote = (id) => {
    state.up.remotes[id] ??= { nextSendSeq: 0, startSeq: 0, highestReceivedSeq: 0, pending: {}, hints: [] }
    if (!handles.has(id)) handles.set(id, { retryCount: 0, ackTimer: null, delayedAckTimer: null, hintsSent: false })
    return state.up.remotes[id]
  }
  const mem = (id) => { remote(id); return handles.get(id) }
  const windowCount = (r) => (r.nextSendSeq > 0 && r.startSeq <= r.nextSendSeq) ? r.nextSendSeq - r.startSeq + 1 : 0

  // ref §2.6 #sendRemoteCommand. The send is not awaited.
  function sendRemoteCommand (to, method, params) {
    const r = remote(to)
    const m = mem(to)
    if (!m.hintsSent) { m.hintsSent = true; registerLocationHints(to, r.hints) } // first send only (W18)
    if (windowCount(r) >= cfg.maxPending) { // reject the newest
      count(to).rejectedCap++
      throw new Error(`Message rejected: pending queue at capacity (${cfg.maxPending})`)
    }
    const wasEmpty = windowCount(r) === 0
    const seq = ++r.nextSendSeq
    const text = envelope(seq, r.highestReceivedSeq, method, params)
    clearTimeout(m.delayedAckTimer) // piggybacked
    m.delayedAckTimer = null
    r.pending[seq] = text
    if (wasEmpty) r.startSeq = seq
    save()
    count(to).accepted++
    if (wasEmpty) startAckTimeout(to)
    sendRemoteMessage(to, text).catch((e) => {
      bump(count(to).sendErrors, e?.name ?? 'Error')
      if (isTerminalSendError(e)) giveUp(to, `terminal send error: ${e.message}`)
    })
    return seq
  }

  function startAckTimeout (id) {
    const m = mem(id)
    clearTimeout(m.ackTimer)
    m.ackTimer = null
    if (windowCount(remote(id)) > 0) m.ackTimer = setTimeout(() => handleAckTimeout(id), cfg.ackTimeoutMs)
  }

  // ref §2.6 ACK timer: after 3 retransmissions give up; otherwise resend
  // the whole window sequentially, awaiting each send, then re-arm.
  async function handleAckTimeout (id) {
    const r = remote(id)
    const m = mem(id)
    m.ackTimer = null
    if (windowCount(r) === 0) return
    if (m.retryCount >= cfg.maxRetries) { giveUp(id, `not acknowledged after ${cfg.maxRetries} retries`); return }
    m.retryCount++
    count(id).retransmitRounds++
    const from = r.startSeq
    const to = r.nextSendSeq
    for (let s = from; s <= to; s++) {
      const text = r.pending[s]
      if (text === undefined) continue
      try {
        await sendRemoteMessage(id, text)
      } catch (e) {
        bump(count(id).sendErrors, e?.name ?? 'Error')
        if (isTerminalSendError(e)) { giveUp(id, `terminal send error: ${e.message}`); return }
      }
    }
    startAckTimeout(id)
  }

  // ref §2.6 #handleAck: cumulative; always restarts the ACK timer (W2).
  function handleAck (id, n) {
    const r = remote(id)
    const m = mem(id)
    const before = r.startSeq
    while (windowCount(r) > 0 && r.startSeq <= n) {
      delete r.pending[r.startSeq]
      r.startSeq++
    }
    if (r.startSeq !== before) {
      save()
      m.retryCount = 0
      count(id).acked += r.startSeq - before
      out({ event: 'acked', to: id, upTo: r.startSeq - 1 })
    }
    startAckTimeout(id)
  }

  // ref §2.7 giveUp: the window is skipped (startSeq past it); later
  // messages get new seqs, so the peer sees a gap.
  function giveUp (id, reason) {
    const r = remote(id)
    const m = mem(id)
    clearTimeout(m.ackTimer)
    m.ackTimer = null
    const n = windowCount(r)
    const from = r.startSeq
    if (n > 0) {
      for (let s = r.startSeq; s <= r.nextSendSeq; s++) delete r.pending[s]
      r.startSeq = r.nextSendSeq + 1
      save()
      count(id).gaveUp += n
      count(id).giveUps++
    }
    m.retryCount = 0
    out({ event: 'gaveUp', peer: id, from, to: from + n - 1, count: n, reason })
  }

  // Transport give-up (onRemoteGiveUp → RemoteManager, ref §2.7).
  function onRemoteGiveUp (id) { giveUp(id, 'transport gave up') }

  function scheduleDelayedAck (id) {
    const m = mem(id)
    clearTimeout(m.delayedAckTimer)
    m.delayedAckTimer = setTimeout(() => {
      m.delayedAckTimer = null
      const h = remote(id).highestReceivedSeq
      if (h > 0) {
        sendRemoteMessage(id, JSON.stringify({ ack: h })).catch((e) => bump(count(id).ackSendFailures, e?.name ?? 'Error'))
      }
    }, cfg.delayedAckMs)
  }

  // ref §2.4, §2.6 handleRemoteMessage. Gaps are accepted (W1).
  const METHODS = ['deliver', 'redeemURL', 'redeemURLReply']
  const DELIVER_KINDS = ['message', 'notify', 'dropExports', 'retireExports', 'retireImports', 'bringOutYourDead']
  async function handleRemoteMessage (from, text) {
    const msg = JSON.parse(text)
    const r = remote(from)
    if (msg.ack !== undefined && msg.seq === undefined) { handleAck(from, msg.ack); return }
    if (msg.ack !== undefined) handleAck(from, msg.ack)
    scheduleDelayedAck(from) // even for duplicates and before validation
    if (!Number.isInteger(msg.seq) || msg.seq < 1) throw new Error(`invalid message seq: ${msg.seq}`)
    if (!METHODS.includes(msg.method)) throw new Error(`unknown remote message type ${msg.method}`)
    if (msg.method === 'deliver' && !DELIVER_KINDS.includes(msg.params?.[0])) throw new Error(`unknown remote delivery method ${msg.params?.[0]}`)
    if (msg.seq <= r.highestReceivedSeq) { count(from).duplicates++; return }
    if (msg.seq > r.highestReceivedSeq + 1) {
      count(from).gaps++
      count(from).skipped += msg.seq - r.highestReceivedSeq - 1
      out({ event: 'gapAccepted', from, expected: r.highestReceivedSeq + 1, seq: msg.seq })
    }
    out({ event: 'message', from, seq: msg.seq, method: msg.method, params: msg.params })
    r.highestReceivedSeq = msg.seq
    count(from).received++
    save()
    scheduleDelayedAck(from)
  }

  // ref §2.8 #handleIncarnationChange, on every successful handshake.
  function onIncarnationChange (id, observed) {
    const stored = state.up.peerIncarnation[id]
    if (stored === observed) return false
    const isRestart = stored !== undefined
    if (isRestart) {
      const r = remote(id)
      const m = mem(id)
      r.nextSendSeq = 0; r.startSeq = 0; r.highestReceivedSeq = 0; r.pending = {}
      clearTimeout(m.ackTimer); clearTimeout(m.delayedAckTimer)
      m.ackTimer = null; m.delayedAckTimer = null; m.retryCount = 0
      out({ event: 'restarted', peer: id, previous: stored, current: observed })
    }
    state.up.peerIncarnation[id] = observed
    save()
    return isRestart
  }

  // ref §2.6 restore at start-up: orphans below startSeq deleted, the ACK
  // timer started for a non-empty window (retransmission one ackTimeout
  // after start-up, W22). Hints reach the transport only with the first new
  // send (W18).
  for (const id of Object.keys(state.up.remotes)) {
    const r = remote(id)
    for (const s of Object.keys(r.pending).map(Number)) if (s < r.startSeq) delete r.pending[s]
    if (windowCount(r) > 0) startAckTimeout(id)
  }
  save()

  const numbered = (k) => ['message', 'ro+1', { methargs: { body: `#["n",[${k}]]`, slots: [] } }]

  // Control operations (stdin commands), see peer.mjs.
  async function op (req) {
    if (req.to && req.hints) {
      // Kernel.registerLocationHints; the first contact's hints are also
      // stored with the remote (establishRemote, ref §4.5).
      if (!state.up.remotes[req.to]) { remote(req.to).hints = [...req.hints]; save() }
      registerLocationHints(req.to, req.hints)
    }
    switch (req.op) {
      case 'send': {
        const seq = sendRemoteCommand(req.to, req.method ?? 'deliver', req.params ?? numbered(0))
        out({ event: 'sent', to: req.to, seq })
        break
      }
      case 'burst': { // n numbered commands at once, none awaited (as the kernel does)
        // at: wall-clock ms to start at, so that two processes start together.
        if (req.at) await new Promise(resolve => setTimeout(resolve, Math.max(0, req.at - Date.now())))
        let accepted = 0
        let rejected = 0
        let first = 0
        let last = 0
        const from = req.from ?? 1
        for (let k = from; k < from + req.n; k++) {
          try {
            last = sendRemoteCommand(req.to, 'deliver', numbered(k))
            if (!first) first = last
            accepted++
          } catch { rejected++ }
        }
        out({ event: 'burst', to: req.to, accepted, rejected, firstSeq: first, lastSeq: last })
        break
      }
      case 'close':
        closeConnection(req.to)
        out({ event: 'closed', peer: req.to })
        break
      case 'reconnect':
        reconnectPeer(req.to, req.hints ?? [])
        out({ event: 'reconnecting', peer: req.to })
        break
      case 'counts': {
        const r = remote(req.to)
        const st = getState(req.to)
        out({
          event: 'counts',
          peer: req.to,
          nextSendSeq: r.nextSendSeq,
          startSeq: r.startSeq,
          highestReceivedSeq: r.highestReceivedSeq,
          pending: windowCount(r),
          channel: Boolean(st.channel),
          reconnecting: rstate(req.to).reconnecting,
          intentionallyClosed: st.intentionallyClosed,
          ...count(req.to)
        })
        break
      }
      case 'stop': // Kernel.stop: transport first, then the handles' timers (ref §6.2)
        await stopTransport()
        for (const m of handles.values()) { clearTimeout(m.ackTimer); clearTimeout(m.delayedAckTimer) }
        save()
        out({ event: 'stopped' })
        process.exit(0)
        break
      default:
        out({ event: 'error', error: `unknown op ${req.op}` })
    }
  }

  out({ event: 'upstream', config: cfg, self })
  return { op, stop: stopTransport }
}
