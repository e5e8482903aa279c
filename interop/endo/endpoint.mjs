// endpoint.mjs: the JavaScript test peer's endpoint mode. A small ocap
// kernel on top of interop/node's seq/ack peer (../node/seqack.mjs), with
// bodies encoded by the real @endo/marshal 1.8.0 under SES (lib.mjs), for
// ocapnet's kernel-layer interop tests (interop/endpoint_test.go).
//
//   node endpoint.mjs --seed HEX [--state FILE] [--listen MA]... [--reserve RELAY_MA]...
//
// It follows the JavaScript ocap-kernel as kernel-protocol.md (kp) describes
// it:
//   kp §1    one c-list per remote, in the persisted state, updated together
//            with the seq state in one save (one transaction); an exception
//            while applying a frame rolls both back and leaves the frame
//            unacknowledged (poison, reported as a "poison" event).
//   kp §2    RRefs: per-remote object and promise counters from 1; JS stores
//            its own allocations as ro-N/rp-N and sends them inverted;
//            incoming refs are looked up verbatim; an unknown + ref makes a
//            new import (a promise one decided by and subscribed to by the
//            peer); an unknown - ref throws "<ref> is not an export
//            reference".
//   kp §3.1  message: methargs CapData from makeMarshal(convertValToSlot,
//            convertSlotToVal, {serializeBodyFormat:'smallcaps',
//            errorTagging:'off'}) whose slot conversions run over the c-list;
//            a fresh result rp+K with each call; an inbound message's result
//            is resolved by notify when the local method settles (a throw
//            becomes a rejection).
//   kp §3.2  notify: entries applied in order; "already resolved" and "not
//            permitted to resolve" throw; subscribers get the resolution,
//            which echoes a peer's resolution of its own promise back to it.
//   kp §3.5  redeemURL/redeemURLReply with the kernel's failure texts,
//            in-memory reply keys "1", "2", … per remote, a 40 s timeout after
//            which a late reply is poison.
//   kp §7    URLs ocap:<oid>@<peerId>[,<hint>]* parsed with URL.parse as
//            parseOcapURL does; oids are "z" + base58btc.
//   kp §8.1  when a peer's incarnation changes: seq state reset (seqack.mjs),
//            every peer-allocated (+) c-list entry forgotten, objects left
//            without owner (calls to them are rejected with OBJECT_DELETED),
//            pending redemptions rejected with "Remote peer restarted";
//            promises the peer decides are NOT rejected (K3: their callers
//            hang, as upstream's).
//
// Deviations (this is a test peer, not a kernel):
//   - kernel and vat are one: local objects are Far objects in this process,
//     invoked directly; there is no run queue, no liveslots (bodies use the
//     kernel marshal, so errors carry no errorId) and no GC (GC and BOYD
//     frames are accepted and ignored).
//   - a message to a promise (JS would queue it) is rejected.
//   - resolved values are kept in memory only; after a restart a resolved
//     promise can no longer be forwarded.
//   - oids are random and looked up in the state, not AES-GCM ciphertexts.
//
// Commands (JSON lines on stdin), and what they report (JSON lines on stdout):
//   {"op":"issue","name":"test"}           -> {"event":"issued","name","url"}
//   {"op":"redeem","id","url","name"}       -> {"event":"redeemed","id","ok","name"?,"kref"?,"error"?}
//   {"op":"call","id","target":NAME|KREF,"method","args":[bridge…]}
//                                           -> {"event":"result","id","ok","value"|"error"}
//   {"op":"state"}                          -> {"event":"state","kernel":{…}}
// Arguments and results are in ocapnet's smallcaps bridge JSON (smallcaps/
// doc.go); a remotable or promise argument names its value by a name given
// to redeem, "test", or a kref. Inbound calls on local objects are reported
// as {"event":"called","target","method","args"} before they run.
import { loadState, makeNode, startSeqAck } from '../node/seqack.mjs'
import { fromBridge, toBridge, passStyleOf } from './lib.mjs'
import { randomBytes } from 'node:crypto'
import readline from 'node:readline'

const { makeMarshal, Far, Remotable } = await import('@endo/marshal')

const REDEEM_TIMEOUT_MS = 40000

function parseArgs (argv) {
  const o = { listen: [], reserve: [], state: '', seed: '' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--seed') o.seed = argv[++i]
    else if (a === '--state') o.state = argv[++i]
    else if (a === '--listen') o.listen.push(argv[++i])
    else if (a === '--reserve') o.reserve.push(argv[++i])
    else throw new Error(`unknown argument ${a}`)
  }
  if (!/^[0-9a-f]{64}$/.test(o.seed)) throw new Error('--seed must be 64 lower-case hex digits')
  return o
}

const trace = process.env.OCAPNET_JS_TRACE === '1'
const out = (obj) => {
  const line = JSON.stringify(obj)
  process.stdout.write(line + '\n')
  if (trace) process.stderr.write(new Date().toISOString() + ' ' + line + '\n')
}
const opts = parseArgs(process.argv.slice(2))
const { state, save } = loadState(opts.state)
state.kernel ??= { nextKo: 1, nextKp: 1, objects: {}, promises: {}, clists: {}, oids: {}, names: {}, calls: {} }
const K = () => state.kernel
const node = await makeNode(opts)
const myId = node.peerId.toString()

// ---- c-lists (kp §2) ----

const invert = (eref) => eref.replace(/[+-]/, (s) => (s === '+' ? '-' : '+'))
const clist = (peer) => {
  K().clists[peer] ??= { k2e: {}, e2k: {}, nextObjectId: 1, nextPromiseId: 1 }
  return K().clists[peer]
}
// toWire is translateRefKtoE then invertRRef: the ref to write in a frame.
function toWire (peer, kref) {
  const c = clist(peer)
  let eref = c.k2e[kref]
  if (eref === undefined) {
    eref = kref.startsWith('ko') ? `ro-${c.nextObjectId++}` : `rp-${c.nextPromiseId++}`
    c.k2e[kref] = eref; c.e2k[eref] = kref
  }
  return invert(eref)
}
// fromWire is translateRefEtoK (exportFromEndpoint): verbatim lookup.
function fromWire (peer, eref) {
  if (typeof eref !== 'string' || !/^r[op][+-]\d+$/.test(eref)) throw Error(`${eref} is not a valid RRef`)
  const c = clist(peer)
  const known = c.e2k[eref]
  if (known !== undefined) return known
  if (eref[2] === '-') throw Error(`${eref} is not an export reference`)
  const kref = eref[1] === 'o' ? newObject(peer) : newPromise(peer, [peer])
  c.k2e[kref] = eref; c.e2k[eref] = kref
  return kref
}

// ---- kernel objects and promises, and their JavaScript values ----

const vals = new Map() // kref -> value (in memory)
const krefOf = new Map() // value -> kref
function newObject (owner, iface) {
  const kref = `ko${K().nextKo++}`
  K().objects[kref] = { owner, iface }
  return kref
}
function newPromise (decider, subscribers = []) {
  const kref = `kp${K().nextKp++}`
  K().promises[kref] = { state: 'unresolved', decider, subscribers }
  return kref
}
const settlers = new Map() // kp -> { resolve, reject }
function valueOf (kref, iface) {
  let v = vals.get(kref)
  if (v !== undefined) return v
  if (kref.startsWith('kp')) {
    let resolve, reject
    v = harden(new Promise((res, rej) => { resolve = res; reject = rej }))
    v.catch(() => {})
    settlers.set(kref, { resolve, reject })
  } else {
    const o = K().objects[kref]
    o.iface ??= iface?.startsWith('Alleged: ') ? iface : 'Alleged: presence'
    v = Remotable(o.iface)
  }
  vals.set(kref, v); krefOf.set(v, kref)
  return v
}
// register gives a local value (a Far object or a promise) a kref.
function register (v) {
  let kref = krefOf.get(v)
  if (kref !== undefined) return kref
  if (passStyleOf(v) === 'promise') {
    kref = newPromise('local')
    v.then((x) => commit(() => resolve(kref, false, x)), (e) => commit(() => resolve(kref, true, e)))
  } else {
    kref = newObject('local')
  }
  vals.set(kref, v); krefOf.set(v, kref)
  return kref
}

// The marshal for one peer: slots are wire refs, converted over its c-list.
const marshals = new Map()
function marshal (peer) {
  if (!marshals.has(peer)) {
    marshals.set(peer, makeMarshal(
      (v) => toWire(peer, register(v)),
      (slot, iface) => valueOf(fromWire(peer, slot), iface),
      { serializeBodyFormat: 'smallcaps', errorTagging: 'off' }))
  }
  return marshals.get(peer)
}

// ---- transactions ----

// A step changes state and queues effects (frames to write, events, local
// invocations) that run only after it committed. commit runs one outside a
// frame; inside a frame, seqack saves after onMessage returns true.
let effects = null
const after = (f) => effects.push(f)
function commit (step) {
  effects = []
  let run
  try { step() } finally { run = effects; effects = null }
  save()
  for (const f of run) f()
}
let seqack
function sendFrame (peer, method, params) {
  const write = seqack.enqueue(peer, method, params)
  after(write)
}

// resolve settles kernel promise kp (kp §3.2): subscribers get a notify; a
// call this endpoint made reports its result; local awaiters are settled.
function resolve (kp, rejected, value) {
  const p = K().promises[kp]
  p.state = rejected ? 'rejected' : 'fulfilled'
  const subs = p.subscribers
  p.decider = undefined; p.subscribers = []
  for (const peer of subs) {
    const data = marshal(peer).toCapData(harden(value))
    sendFrame(peer, 'deliver', ['notify', [[toWire(peer, kp), rejected, data]]])
  }
  const id = K().calls[kp]
  if (id !== undefined) {
    delete K().calls[kp]
    after(() => out({ event: 'result', id, ok: !rejected, [rejected ? 'error' : 'value']: describe(value) }))
  }
  const s = settlers.get(kp)
  if (s) { settlers.delete(kp); after(() => (rejected ? s.reject(value) : s.resolve(value))) }
}

const bridgeView = {
  slotOf: { get: (v) => { const k = krefOf.get(v); return Object.entries(K().names).find(([, x]) => x === k)?.[0] ?? k } },
  ifaceOf: { has: () => false },
  remotable: (name) => valueOf(K().names[name] ?? name),
  promise: (name) => valueOf(K().names[name] ?? name)
}
const describe = (v) => {
  try { return toBridge(bridgeView, v) } catch (e) { return { '@unbridgeable': String(e.message) } }
}

// ---- local objects ----

// sendTo sends method(args) to the object kref owned by a peer (kp §3.1) and
// returns the result's kernel promise; callId, if given, is reported with
// the result.
function sendTo (kref, method, args, callId) {
  const o = K().objects[kref]
  if (!o) throw Error(`no object ${kref}`)
  const kp = newPromise(o.owner)
  if (callId !== undefined) K().calls[kp] = callId
  if (!o.owner) {
    resolve(kp, true, harden(Error('[KERNEL:OBJECT_DELETED] Target object has no owner; it may have been deleted')))
    return kp
  }
  if (o.owner === 'local') throw Error('local calls are not supported')
  const methargs = marshal(o.owner).toCapData(harden([method, args]))
  const target = toWire(o.owner, kref)
  sendFrame(o.owner, 'deliver', ['message', target, { methargs, result: toWire(o.owner, kp) }])
  return kp
}
const E = (obj) => new Proxy({}, {
  get: (_, method) => (...args) => {
    let kp
    const step = () => { kp = sendTo(krefOf.get(obj), method, args) }
    if (effects) step(); else commit(step)
    return valueOf(kp)
  }
})
const localObjects = {
  test: Far('TestObject', {
    echo: (x) => x,
    add: (a, b) => a + b,
    fail: (msg) => { throw TypeError(msg) },
    hang: () => new Promise(() => {}),
    callBack: (obj, method, ...args) => E(obj)[method](...args)
  })
}
const names = K().names
for (const [name, v] of Object.entries(localObjects)) {
  if (names[name] === undefined) names[name] = newObject('local')
  vals.set(names[name], v); krefOf.set(v, names[name])
}
save()

// ---- inbound frames (kp §3) ----

function applyMessage (peer, target, params) {
  const tk = fromWire(peer, target)
  if (typeof params?.result !== 'string') throw Error('message result must be a string')
  const kp = fromWire(peer, params.result)
  const [method, args] = marshal(peer).fromCapData(params.methargs)
  K().promises[kp].decider = 'local'
  const obj = vals.get(tk)
  const name = Object.entries(names).find(([, k]) => k === tk)?.[0] ?? tk
  after(() => {
    out({ event: 'called', from: peer, target: name, method, args: describe(args) })
    const run = async () => {
      if (!tk.startsWith('ko') || K().objects[tk]?.owner !== 'local' || !obj) throw Error(`${target} is not a local object (messages to promises are not supported)`)
      if (typeof obj[method] !== 'function') throw TypeError(`target has no method ${JSON.stringify(method)}`)
      return obj[method](...args)
    }
    run().then((v) => commit(() => resolve(kp, false, v)), (e) => commit(() => resolve(kp, true, e)))
  })
}

function applyNotify (peer, entries) {
  for (const [rpid, rejected, data] of entries) {
    const kp = fromWire(peer, rpid)
    const p = K().promises[kp]
    if (!p) throw Error(`${rpid} is not a promise`)
    if (p.state !== 'unresolved') throw Error(`"${kp}" was already resolved`)
    if (p.decider !== peer) throw Error(`"${peer}" not permitted to resolve "${kp}" because its decider is "${p.decider}"`)
    resolve(kp, !!rejected, marshal(peer).fromCapData(data))
  }
}

// Pending redemptions this endpoint made, in memory as upstream keeps them.
const redemptions = new Map() // `${peer} ${key}` -> { id, name, timer }
const replyKeys = new Map() // peer -> last key

function redeemLocal (url) {
  const u = URL.parse(url)
  if (!u) throw Error('unparseable URL')
  if (u.protocol !== 'ocap:') throw Error('not an ocap URL')
  const parts = u.pathname.split('@')
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw Error('bad ocap URL')
  const [oid, where] = parts
  const host = where.split(',')[0]
  if (!host) throw Error('bad ocap URL')
  if (host !== myId) throw Error("ocapURL from a host that's not me")
  if (!oid.startsWith('z')) throw Error(`Unable to decode multibase string "${oid}", base58btc decoder only supports inputs prefixed with z`)
  const kref = K().oids[oid]
  if (!kref) throw Error('ocapURL has bad object reference')
  return kref
}

function applyRedeemURL (peer, [url, replyKey]) {
  if (typeof replyKey !== 'string') throw Error(`Expected a string for replyKey: ${replyKey}`)
  let reply
  try {
    reply = [true, replyKey, toWire(peer, redeemLocal(url))]
  } catch (e) {
    reply = [false, replyKey, e.message]
  }
  sendFrame(peer, 'redeemURLReply', reply)
}

function applyRedeemURLReply (peer, [ok, key, refOrText]) {
  const r = redemptions.get(`${peer} ${key}`)
  if (!r) throw Error(`unknown URL redemption reply key ${key}`)
  let kref
  if (ok) {
    kref = fromWire(peer, refOrText)
    K().names[r.name] = kref
  }
  after(() => {
    clearTimeout(r.timer); redemptions.delete(`${peer} ${key}`)
    out(ok ? { event: 'redeemed', id: r.id, ok: true, name: r.name, kref } : { event: 'redeemed', id: r.id, ok: false, error: refOrText })
  })
}

function applyFrame (peer, m) {
  const p = m.params
  switch (m.method) {
    case 'deliver':
      switch (p[0]) {
        case 'message': return applyMessage(peer, p[1], p[2])
        case 'notify': return applyNotify(peer, p[1])
        case 'dropExports': case 'retireExports': case 'retireImports': case 'bringOutYourDead':
          return after(() => out({ event: 'ignored', from: peer, kind: p[0], params: p.slice(1) }))
        default: throw Error(`unknown remote delivery method ${p[0]}`)
      }
    case 'redeemURL': return applyRedeemURL(peer, p)
    case 'redeemURLReply': return applyRedeemURLReply(peer, p)
    default: throw Error(`unknown remote message type ${m.method}`)
  }
}

function onMessage (peer, m) {
  const before = JSON.stringify({ kernel: state.kernel, peer: state.peers[peer] })
  effects = []
  try {
    applyFrame(peer, m)
  } catch (e) {
    // Poison (kp §1): roll back, do not record the frame.
    const b = JSON.parse(before)
    state.kernel = b.kernel; state.peers[peer] = b.peer
    for (const k of [...vals.keys()]) if (!K().objects[k] && !K().promises[k]) { krefOf.delete(vals.get(k)); vals.delete(k) }
    effects = null
    out({ event: 'poison', from: peer, seq: m.seq, error: String(e.message), frame: m })
    return false
  }
  const run = effects; effects = null
  setImmediate(() => { for (const f of run) f() }) // after seqack's save
  return true
}

// kp §8.1: the peer lost its state.
function onRestarted (peer) {
  const c = clist(peer)
  let forgotten = 0
  for (const [eref, kref] of Object.entries(c.e2k)) {
    if (eref[2] !== '+') continue
    delete c.e2k[eref]; delete c.k2e[kref]; forgotten++
    if (K().objects[kref]) K().objects[kref].owner = undefined
  }
  const rejected = []
  for (const [k, r] of redemptions) {
    if (!k.startsWith(peer + ' ')) continue
    clearTimeout(r.timer); redemptions.delete(k)
    rejected.push(r.id)
    out({ event: 'redeemed', id: r.id, ok: false, error: 'Remote peer restarted' })
  }
  out({ event: 'peerRestarted', peer, forgotten, redemptionsRejected: rejected })
}

seqack = await startSeqAck({ node, state, save, out, onMessage, onRestarted })

// ---- commands ----

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
function base58 (bytes) {
  let n = BigInt('0x' + Buffer.from(bytes).toString('hex'))
  let s = ''
  while (n > 0n) { s = B58[Number(n % 58n)] + s; n /= 58n }
  for (const b of bytes) { if (b !== 0) break; s = '1' + s }
  return s
}

function op (req) {
  switch (req.op) {
    case 'issue': {
      const kref = names[req.name]
      if (!kref) throw Error(`no local object ${req.name}`)
      const oid = 'z' + base58(randomBytes(16))
      commit(() => { K().oids[oid] = kref })
      out({ event: 'issued', name: req.name, url: [`ocap:${oid}@${myId}`, ...opts.reserve.map(r => `${r}/p2p-circuit/p2p/${myId}`)].join(',') })
      return
    }
    case 'redeem': {
      const u = URL.parse(req.url)
      const host = u?.pathname.split('@')[1]?.split(',')[0]
      if (!host) throw Error('bad ocap URL')
      const r = seqack.remote(host)
      for (const h of [...(req.hints ?? []), ...u.pathname.split(',').slice(1)]) if (h && !r.hints.includes(h)) r.hints.push(h)
      const key = String((replyKeys.get(host) ?? 0) + 1)
      replyKeys.set(host, Number(key))
      const timer = setTimeout(() => {
        redemptions.delete(`${host} ${key}`)
        out({ event: 'redeemed', id: req.id, ok: false, error: `URL redemption timed out after ${REDEEM_TIMEOUT_MS}ms` })
      }, REDEEM_TIMEOUT_MS)
      redemptions.set(`${host} ${key}`, { id: req.id, name: req.name, timer })
      commit(() => sendFrame(host, 'redeemURL', [req.url, key]))
      return
    }
    case 'call': {
      const kref = names[req.target] ?? req.target
      const args = (req.args ?? []).map((a) => fromBridge(bridgeView, a))
      commit(() => sendTo(kref, req.method, args, req.id))
      return
    }
    case 'state':
      out({ event: 'state', kernel: K(), peers: state.peers })
      return
    default:
      throw Error(`unknown op ${req.op}`)
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  let req
  try { req = JSON.parse(line) } catch (err) { out({ event: 'error', error: 'malformed JSON: ' + err.message }); return }
  try { op(req) } catch (err) { out({ event: 'error', op: req.op, id: req.id, error: String(err.message) }) }
})

out({ event: 'ready', peerId: myId, addrs: node.getMultiaddrs().map(String), incarnationId: state.incarnationId })
process.on('SIGTERM', async () => { await node.stop(); process.exit(0) })
