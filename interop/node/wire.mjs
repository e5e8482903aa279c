// Frame texts shared by both modes of peer.mjs (reference §2.3, §2.4).

// envelope is a sequenced command in upstream's key order: seq, ack (only
// when something was received), method, params (when given).
export function envelope (seq, highestReceivedSeq, method, params) {
  const env = { seq }
  if (highestReceivedSeq > 0) env.ack = highestReceivedSeq
  env.method = method
  if (params !== undefined) env.params = params
  return JSON.stringify(env)
}

// isHandshake: a valid handshake message with the given method (handshake
// or handshakeAck); extra fields are ignored.
export function isHandshake (m, method) {
  return m !== null && typeof m === 'object' && m.method === method && typeof m?.params?.incarnationId === 'string'
}
