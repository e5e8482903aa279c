// The peer daemon's status page: it polls /v1/info and /v1/peers with the
// session cookie that a one-time link from `ocapnet login` set.
'use strict'

const $ = (id) => document.getElementById(id)
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])

// dur formats seconds as "3 s", "4 m 5 s", "2 h 1 m", "3 d 4 h".
function dur (s) {
  s = Math.max(0, Math.round(s))
  if (s < 60) return s + ' s'
  if (s < 3600) return Math.floor(s / 60) + ' m ' + (s % 60) + ' s'
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' m'
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h'
}
const secondsSince = (t) => (Date.now() - Date.parse(t)) / 1000
// until says when t is: "in 3 s", or "now" once it has passed (the attempt
// is running).
const until = (t) => { const s = -secondsSince(t); return s >= 0.5 ? 'in ' + dur(s) : 'now' }
const waiting = new Set(['connecting', 'reconnecting', 'failed'])

function errorCell (full, line) {
  if (!full) return '<span class="muted">none</span>'
  if (full === line) return esc(line)
  return `<details><summary>${esc(line)}</summary><pre>${esc(full)}</pre></details>`
}

let prev = null // the previous sample, for throughput
function rate (p, now) {
  if (!prev || !prev.peers[p.peer]) return '<span class="muted">measuring…</span>'
  const q = prev.peers[p.peer]
  const dt = (now - prev.at) / 1000
  if (dt <= 0) return ''
  const f = (x) => (x / dt).toFixed(x / dt < 10 ? 1 : 0) + '/s'
  return `out ${f(p.acked - q.acked)}<br>in ${f(p.delivered - q.delivered)}`
}

function relays (list) {
  if (!list.length) return '<span class="muted">none configured</span>'
  return list.map((r) => {
    const state = r.reserved
      ? `<span class="badge ok">reserved</span> until ${esc(new Date(r.expires).toLocaleTimeString())}`
      : `<span class="badge degraded">no reservation</span> attempt ${r.attempt || 0}` +
        (r.nextTry ? `, next try ${until(r.nextTry)}` : '') + (r.lastError ? ': ' + errorCell(r.lastError, r.lastErrorLine) : '')
    return `<div class="relay"><span class="mono">${esc(r.relay)}</span> ${state}</div>`
  }).join('')
}

function node (me) {
  const h = me.health || {}
  const health = h.status === 'ok'
    ? '<span class="badge ok">ok</span>'
    : `<span class="badge degraded">${esc(h.status)}</span> ${esc((h.problems || []).join('; '))}`
  const rows = [
    ['peer ID', `<span class="mono">${esc(me.peerId)}</span>`],
    ['health', health],
    ['version', esc(me.version)],
    ['uptime', dur(me.uptimeSeconds) + ` <span class="muted">(since ${esc(new Date(me.startedAt).toLocaleString())})</span>`],
    ['reservations', `${me.relays.filter((r) => r.reserved).length} of ${me.relays.length} relays`],
    ['addresses', `<details><summary>${me.addrs.length} address${me.addrs.length === 1 ? '' : 'es'}</summary><div class="mono">${me.addrs.map(esc).join('<br>')}</div></details>`]
  ]
  if (me.events) rows.push(['event log', `events ${me.events.first}–${me.events.last}, ${(me.events.bytes / 1048576).toFixed(1)} MiB`])
  return rows.map(([k, v]) => `<div>${k}</div><div>${v}</div>`).join('')
}

function peerRow (p, now) {
  const state = `<span class="${esc(p.state)}">${esc(p.state)}</span>` + (p.attempt ? ` <span class="muted">attempt ${p.attempt}</span>` : '') +
    (p.since ? `<br><span class="muted">for ${dur(secondsSince(p.since))}</span>` : '')
  const retry = waiting.has(p.state) && p.nextRetry ? until(p.nextRetry) : '<span class="muted">—</span>'
  const counts = `sent ${p.nextSeq} · acked ${p.acked}<br>unacked ${p.unacked} · parked ${p.parked}<br>delivered ${p.delivered}`
  return `<tr><td data-label="peer and connection"><span class="mono">${esc(p.peer)}</span>` +
    (p.remoteAddr ? `<br><span class="mono muted">${esc(p.remoteAddr)}</span>` : '') + '</td>' +
    `<td data-label="state">${state}</td><td data-label="next retry">${retry}</td><td data-label="messages">${counts}</td>` +
    `<td data-label="throughput">${rate(p, now)}</td><td data-label="last error">${errorCell(p.lastError, p.lastErrorLine)}</td></tr>`
}

async function refresh () {
  try {
    const [info, peers] = await Promise.all([fetch('/v1/info'), fetch('/v1/peers')])
    if (info.status === 401 || peers.status === 401) {
      $('err').textContent = 'Not signed in: run `ocapnet login --data DIR` and open the one-time link it prints.'
      return
    }
    if (!info.ok || !peers.ok) throw new Error(`HTTP ${info.status}/${peers.status}`)
    const me = await info.json()
    const list = (await peers.json()).peers || []
    const now = Date.now()
    $('err').textContent = ''
    $('node').innerHTML = node(me)
    $('relays').className = ''
    $('relays').innerHTML = relays(me.relays)
    // Keep the error details that are open across the refresh.
    const open = new Set([...document.querySelectorAll('#peers details[open]')].map((d) => d.dataset.peer))
    $('peers').innerHTML = list.map((p) => peerRow(p, now)).join('') || '<tr><td colspan="6" class="muted">no peers yet</td></tr>'
    document.querySelectorAll('#peers tr').forEach((tr, i) => {
      const d = tr.querySelector('details')
      if (d && list[i]) { d.dataset.peer = list[i].peer; d.open = open.has(list[i].peer) }
    })
    prev = { at: now, peers: Object.fromEntries(list.map((p) => [p.peer, p])) }
  } catch (e) {
    $('err').textContent = 'daemon unreachable: ' + e
  }
}
refresh()
setInterval(refresh, 1000)
