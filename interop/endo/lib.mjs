// Shared by gen.mjs and check.mjs: the real @endo/marshal under SES, set up as
// the ocap-kernel's kernel marshal (packages/ocap-kernel/src/liveslots/
// kernel-marshal.ts: smallcaps, errorTagging off), plus conversions between
// JavaScript values and ocapnet's smallcaps bridge JSON (smallcaps/doc.go).
import 'ses';
import '@endo/eventual-send/shim.js';

lockdown({ errorTaming: 'unsafe', overrideTaming: 'severe', consoleTaming: 'unsafe' });

const { makeMarshal, makeTagged, passStyleOf, Remotable, Far, getInterfaceOf, nameForPassableSymbol, passableSymbolForName } =
  await import('@endo/marshal').then(async (m) => ({ ...m, ...(await import('@endo/pass-style')) }));

export { passStyleOf };

// A slot table shared by one marshal: slot string <-> JavaScript object.
export const makeSlots = () => {
  const slotOf = new Map();
  const valOf = new Map();
  const ifaceOf = new Map(); // object -> the iface string seen in the body (undefined: bare)
  const remotable = (slot, iface) => {
    let v = valOf.get(slot);
    if (v === undefined) {
      const valid = iface !== undefined && (iface === 'Remotable' || iface.startsWith('Alleged: ') || iface.startsWith('DebugName: '));
      v = valid ? Remotable(iface) : Far('undetermined', {});
      slotOf.set(v, slot); valOf.set(slot, v); ifaceOf.set(v, iface);
    }
    return v;
  };
  const promise = (slot) => {
    let v = valOf.get(slot);
    if (v === undefined) {
      v = harden(new Promise(() => {}));
      slotOf.set(v, slot); valOf.set(slot, v);
    }
    return v;
  };
  // As the kernel's kslot: the slot must be a string (an index past the end
  // of slots gives undefined), and its text decides promise or remotable.
  const convertSlotToVal = (slot, iface) => {
    if (typeof slot !== 'string') throw TypeError(`slot ${String(slot)} is not a string (index out of range?)`);
    return /^(k|r)?p/.test(slot) ? promise(slot) : remotable(slot, iface);
  };
  const convertValToSlot = (v) => slotOf.get(v);
  return { slotOf, ifaceOf, remotable, promise, convertSlotToVal, convertValToSlot };
};

export const kernelMarshal = (slots) =>
  makeMarshal(slots.convertValToSlot, slots.convertSlotToVal, { serializeBodyFormat: 'smallcaps', errorTagging: 'off' });

// As a vat's liveslots marshal (errorTagging on), for errorId bodies.
export const liveslotsMarshal = (slots, vatId = 'v1') =>
  makeMarshal(slots.convertValToSlot, slots.convertSlotToVal, {
    marshalName: `liveSlots:${vatId}`, serializeBodyFormat: 'smallcaps', errorIdNum: 70_000, marshalSaveError: () => {},
  });

const errorCtors = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError };

// fromBridge builds the JavaScript value that a bridge tree stands for.
export const fromBridge = (slots, j) => {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return harden(j.map((x) => fromBridge(slots, x)));
  const keys = Object.keys(j);
  if (keys.length === 1 && keys[0].startsWith('@')) {
    const x = j[keys[0]];
    switch (keys[0]) {
      case '@number': return { NaN, Infinity, '-Infinity': -Infinity, '-0': -0 }[x];
      case '@bigint': return BigInt(x);
      case '@undefined': return undefined;
      case '@symbol': return passableSymbolForName(x);
      case '@remotable': return slots.remotable(x.slot, x.iface);
      case '@promise': return slots.promise(x.slot);
      case '@error': {
        if (x.errorId !== undefined || x.extra !== undefined) throw Error('fromBridge: errorId and extra cannot be built');
        const Ctor = errorCtors[x.name ?? 'Error'] ?? Error;
        return harden(x.name === 'AggregateError' ? new AggregateError([], x.message) : Ctor(x.message));
      }
      case '@tagged': return makeTagged(x.tag, fromBridge(slots, x.payload));
      case '@record': return harden(Object.fromEntries(Object.entries(x).map(([k, v]) => [k, fromBridge(slots, v)])));
      default: throw Error(`fromBridge: unknown ${keys[0]}`);
    }
  }
  return harden(Object.fromEntries(keys.map((k) => [k, fromBridge(slots, j[k])])));
};

// toBridge describes a passable JavaScript value as a bridge tree. Errors
// carry only name and message: a decoded error's errorId and extra
// properties are not observable.
export const toBridge = (slots, v) => {
  switch (typeof v) {
    case 'string': case 'boolean': return v;
    case 'undefined': return { '@undefined': true };
    case 'bigint': return { '@bigint': String(v) };
    case 'symbol': return { '@symbol': nameForPassableSymbol(v) };
    case 'number':
      if (Number.isNaN(v)) return { '@number': 'NaN' };
      if (v === Infinity) return { '@number': 'Infinity' };
      if (v === -Infinity) return { '@number': '-Infinity' };
      if (Object.is(v, -0)) return { '@number': '-0' };
      return v;
  }
  if (v === null) return null;
  switch (passStyleOf(v)) {
    case 'copyArray': return v.map((x) => toBridge(slots, x));
    case 'copyRecord': {
      const out = Object.fromEntries(Object.keys(v).map((k) => [k, toBridge(slots, v[k])]));
      const keys = Object.keys(out);
      return keys.length === 1 && keys[0].startsWith('@') ? { '@record': out } : out;
    }
    case 'remotable': {
      const iface = slots.ifaceOf.has(v) ? slots.ifaceOf.get(v) : getInterfaceOf(v);
      return { '@remotable': iface === undefined || iface === '' ? { slot: slots.slotOf.get(v) } : { slot: slots.slotOf.get(v), iface } };
    }
    case 'promise': return { '@promise': { slot: slots.slotOf.get(v) } };
    case 'error': return { '@error': { name: v.name, message: v.message } };
    case 'tagged': return { '@tagged': { tag: v[Symbol.toStringTag], payload: toBridge(slots, v.payload) } };
  }
  throw Error(`toBridge: cannot describe ${passStyleOf(v)}`);
};
