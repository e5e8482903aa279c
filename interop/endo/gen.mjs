// Writes ocapnet's smallcaps golden vectors, made by the real @endo/marshal
// (the version the ocap-kernel pins) under SES with the kernel marshal's
// options, to the file named on the command line:
//   node gen.mjs ../../smallcaps/testdata/golden.json     (npm run gen)
// Regenerate after bumping @endo/marshal. Deterministic: a fixed seed.
//
// The file holds
//   encode:  [{label, value, body, slots}]  value is the bridge JSON (smallcaps/doc.go)
//   decode:  [{label, body, slots, value} | {label, body, slots, error}]
//   numbers: [{bits, text}]   String(x) for the double with those IEEE bits (hex)
//   wellKnownSymbols: the names ownKeys(Symbol) gives under SES
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { makeSlots, kernelMarshal, liveslotsMarshal, fromBridge, toBridge } from './lib.mjs';

const require = createRequire(import.meta.url);
const version = (p) => require(`${p}/package.json`).version;

// --- the rows of kernel-protocol.md §6.5 (and a few more), as bridge JSON ---
const o1 = { '@remotable': { slot: 'ko1', iface: 'Alleged: Greeter' } };
const o2 = { '@remotable': { slot: 'ko2', iface: 'Alleged: Alleged' } };
const p1 = { '@promise': { slot: 'kp3' } };
const big = (s) => ({ '@bigint': s });
const num = (s) => ({ '@number': s });
const err = (name, message) => ({ '@error': { name, message } });
class MyErr extends TypeError {}
const rows = [
  ['"hello"', 'hello'], ['"" (empty string)', ''], ['"!bang"', '!bang'], ['"#hash"', '#hash'],
  ['"$dollar"', '$dollar'], ['"&amp"', '&amp'], ['"-dash"', '-dash'], ['"+plus"', '+plus'],
  ['". dot" (not special)', '.dot'], ['"é☃" (non-ASCII)', 'é☃'],
  ['every special prefix', ['!', '"', '#', '$', '%', '&', "'", '(', ')', '*', '+', ',', '-', '.', ' x', '\u0000']],
  ['JSON escapes', 'q"b\\s/\b\f\n\r\t\u0001\u001f\u007f<>&\u2028\u2029\u{1F600}'],
  ['42', 42], ['-1.5', -1.5], ['-0', num('-0')], ['1e21', 1e21], ['NaN', num('NaN')],
  ['Infinity', num('Infinity')], ['-Infinity', num('-Infinity')],
  ['numbers at the notation edges', [1e-7, 1e-6, 123e-20, 1e20, 123456789012345680000, 0.1, 5e-324, 1.7976931348623157e308, 2 ** 53, -(2 ** 53) + 1]],
  ['10n', big('10')], ['-7n', big('-7')], ['0n', big('0')], ['2n**70n', big('1180591620717411303424')],
  ['true', true], ['false', false], ['null', null], ['undefined', { '@undefined': true }],
  ['[]', []], ['[1,"a",null]', [1, 'a', null]], ['{} (empty record)', {}],
  ['{b:1,a:2} (keys sorted)', { b: 1, a: 2 }], ['{"#x":1,"!y":2}', { '#x': 1, '!y': 2 }],
  ['{u: undefined}', { u: { '@undefined': true } }],
  ['keys sorted by UTF-16 code unit', { '\u{1F600}': 1, '\uFFFF': 2, '\uE000': 3, z: 4, Z: 5, '': 6, ' ': 7, '!': 8 }],
  ['array-index keys are listed first, slots still numbered in sorted order', { '%x': o1, 0: o2, 10: 1, 9: 2, '01': 3, 4294967294: 4, 4294967295: 5 }],
  ['a record that needs the bridge wrapper', { '@record': { '@x': 1 } }],
  ['Symbol.asyncIterator', { '@symbol': '@@asyncIterator' }], ['Symbol.for("foo")', { '@symbol': 'foo' }],
  ['Symbol.for("@@foo")', { '@symbol': '@@@@foo' }], ['Symbol.iterator', { '@symbol': '@@iterator' }],
  ['tagged("copySet",[1,2])', { '@tagged': { tag: 'copySet', payload: [1, 2] } }],
  ['tagged with a special tag', { '@tagged': { tag: '#x', payload: '!y' } }],
  ['remotable (exo iface "Greeter")', o1], ['remotable (Far "Alleged")', o2], ['promise', p1],
  ['[o1, o1, p1] (repeat)', [o1, o1, p1]], ['{target:o2, p:p1}', { target: o2, p: p1 }],
  ['remotable with a DebugName iface', { '@remotable': { slot: 'ro+5', iface: 'DebugName: x.y' } }],
  ['slot order follows sorted keys, depth first', { b: [o1, { d: p1, c: o2 }], a: { '@promise': { slot: 'rp+9' } } }],
  ['Error("boom")', err('Error', 'boom')], ['TypeError("bad")', err('TypeError', 'bad')],
  ['RangeError("#x")', err('RangeError', '#x')],
  ['subclass of TypeError', err('TypeError', 'sub'), () => harden(new MyErr('sub'))],
  ['Error in array', [err('Error', 'inner')]], ['every error constructor', ['EvalError', 'ReferenceError', 'SyntaxError', 'URIError', 'AggregateError'].map((n) => err(n, n))],
  ['methargs ["greet",["Alice"]]', ['greet', ['Alice']]], ['methargs ["add",[1,2n]]', ['add', [1, big('2')]]],
  ['methargs ["use",[o1,p1]]', ['use', [o1, p1]]],
  ['methargs [@@asyncIterator,[]]', [{ '@symbol': '@@asyncIterator' }, []]],
];

const encode = [];
const addEncode = (label, value, make) => {
  const slots = makeSlots();
  const cd = kernelMarshal(slots).toCapData(make ? make() : fromBridge(slots, value));
  encode.push({ label, value, body: cd.body, slots: cd.slots });
};
for (const [label, value, make] of rows) addEncode(label, value, make);
{
  // A vat's marshal adds errorId (liveslots, errorTagging on).
  const slots = makeSlots();
  const cd = liveslotsMarshal(slots).toCapData(harden(Error('boom')));
  encode.push({ label: 'Error("boom") via liveslots marshal', value: { '@error': { name: 'Error', message: 'boom', errorId: 'error:liveSlots:v1#70001' } }, body: cd.body, slots: cd.slots });
}

// --- generated values: a seeded PRNG (mulberry32) ---
let seed = 0x0ca9ae7;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const int = (n) => Math.floor(rand() * n);
const pieces = ['a', 'Z', '0', ' ', '.', '!', '"', '#', '$', '%', '&', "'", '(', ')', '*', '+', ',', '-', '@', '\\', '/', '<', '>',
  '\u0000', '\u0007', '\n', '\t', '\u001f', '\u007f', 'é', '☃', '\u2028', '\u2029', '\uE000', '\uFFFF', '\u{1F600}', '\u{10FFFF}', 'ø', '日本'];
const str = () => { let s = ''; for (let i = int(6); i > 0; i--) s += pick(pieces); return s; };
const f64 = () => {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setUint32(0, (rand() * 2 ** 32) >>> 0); dv.setUint32(4, (rand() * 2 ** 32) >>> 0);
  return dv.getFloat64(0);
};
const numberLike = () => {
  switch (int(6)) {
    case 0: return f64();
    case 1: return int(2000) - 1000;
    case 2: return (rand() - 0.5) * 10 ** (int(60) - 30);
    case 3: return pick([0, -0, 1e21, 1e-7, 9007199254740991, 0.1 + 0.2, NaN, Infinity, -Infinity, 5e-324]);
    case 4: return Number((rand() * 1000).toFixed(int(5)));
    default: return 10 ** (int(44) - 22);
  }
};
const numberBridge = (x) => toBridge(makeSlots(), x);
const slotPool = [
  { '@remotable': { slot: 'ro+1', iface: 'Alleged: One' } }, { '@remotable': { slot: 'ro-2', iface: 'Alleged: Two' } },
  { '@remotable': { slot: 'ko7', iface: 'DebugName: seven' } }, { '@promise': { slot: 'rp+1' } }, { '@promise': { slot: 'rp-4' } },
];
const gen = (depth) => {
  const leaf = depth <= 0 || rand() < 0.45;
  if (leaf) {
    switch (int(12)) {
      case 0: case 1: case 2: return str();
      case 3: case 4: return numberBridge(numberLike());
      case 5: { const d = String(int(10 ** int(16))) + String(int(10 ** int(20))); return big(rand() < 0.5 ? `-${d}` : d.replace(/^0+(?=.)/, '')); }
      case 6: return pick([true, false, null, { '@undefined': true }]);
      case 7: return { '@symbol': pick(['@@asyncIterator', '@@iterator', 'foo', '', '!x', '@@@@y', str()]) };
      case 8: case 9: return pick(slotPool);
      case 10: return err(pick(['Error', 'TypeError', 'RangeError', 'SyntaxError']), str());
      default: return str();
    }
  }
  switch (int(4)) {
    case 0: case 1: { const a = []; for (let i = int(5); i > 0; i--) a.push(gen(depth - 1)); return a; }
    case 2: {
      const r = {};
      for (let i = int(5); i > 0; i--) r[str()] = gen(depth - 1);
      const keys = Object.keys(r);
      return keys.length === 1 && keys[0].startsWith('@') ? { '@record': r } : r;
    }
    default: return { '@tagged': { tag: pick(['copySet', 'copyBag', 'match:any', '#odd', str()]), payload: gen(depth - 1) } };
  }
};
for (let i = 0; i < 400; i++) {
  const value = gen(4);
  // A slot's iface must not change between occurrences; the pool keeps them fixed.
  addEncode(`generated ${i}`, value);
}

// --- decode checks: bodies a peer might send, valid or not ---
const decodeCases = [
  ['#"abc"'], ['#"!#x"'], ['#"!x"'], ['#"!x" '], ['#"#foo"'], ['#"*x"'], ['#"\'x"'], ['#"(x"'], ['#")x"'], ['#",x"'], ['#"\\"x"'],
  ['#"+12"'], ['#"-0"'], ['#"+007"'], ['#"+12 "'], ['#"+12\\u00a0"'], ['#"+ 12"'], ['#"+"'], ['#"-"'], ['#"+0x10"'], ['#"+1e3"'], ['#"+1.0"'], ['#"+1_0"'],
  ['#1.0'], ['#-0'], ['#1e400'], ['#-1e400'], ['#1e-400'], ['#123456789012345678901234567890'],
  ['#{"#error":"m","name":"TypeError"}'], ['#{"#error":"m","name":"Bogus"}'], ['#{"#error":"m","name":"Error","errorId":"error:x#1"}'],
  ['#{"#error":"m"}'], ['#{"#error":"m","name":5}'], ['#{"#error":5,"name":"Error"}'], ['#{"#error":"m","name":"Error","message":"x"}'],
  ['#{"#error":"!#m","name":"!Error"}'], ['#{"#error":"m","name":"Error","cause":{"#error":"c","name":"RangeError"}}'],
  ['#{"#error":"m","name":"Error","extra":"#bad"}'], ['#{"#error":"m","name":"Error","errorId":5}'], ['#{"#error":"m","name":"#undefined"}'],
  ['#"$0.Alleged: Foo"', ['ro+1']], ['#"$0"', ['ro+1']], ['#"&0"', ['rp+1']], ['#"$1"', ['ro+1']], ['#"&1"', ['rp+1']], ['#"$0"'],
  ['#["$0.Alleged: A","$0.Alleged: B","$0"]', ['ro+1']], ['#["$0","&0"]', ['ro+1']], ['#"$x"', ['ro+1']], ['#"$-1"', ['ro+1']],
  ['#"$01"', ['ro+1', 'ro+2']], ['#"$ 1"', ['ro+1', 'ro+2']], ['#"$0x1"', ['ro+1', 'ro+2']], ['#"$1e0"', ['ro+1', 'ro+2']], ['#"$.Alleged: x"', ['ro+1']],
  ['#"$0."', ['ro+1']], ['#"$0.a.b"', ['ro+1']], ['#"$1.5"', ['ro+1']], ['#"$Infinity"', ['ro+1']], ['#"$9007199254740993"', ['ro+1']],
  ['#{"#tag":"x","payload":1}'], ['#{"#tag":"x"}'], ['#{"#tag":5,"payload":1}'], ['#{"#tag":"x","payload":1,"y":2}'], ['#{"#tag":"!#x","payload":"!!y"}'],
  ['#{"#tag":"+1","payload":1}'], ['#{"#tag":"x","payload":1,"#error":"m"}'], ['#{"#error":"m","#tag":"x","payload":1}'],
  ['#{"#x":1}'], ['#{"!#x":1}'], ['#{"!x":1}'], ['#{"+1":1}'], ['#{"%foo":1}'], ['#{"*x":1}'], ['#{"$0":1}', ['ro+1']],
  ['#{"b":1,"a":2}'], ['#{"a":1,"a":2}'], ['#{"a":1,"!a":2}'], ['#{"!1":1,"1":2,"b":3,"0":4}'], ['#{"__proto__":1}'],
  ['"plain capdata"'], ['#[1,2'], ['#'], ['#1 2'], ['# [1] '], ['#"%@@asyncIterator"'], ['#"%@@bogus"'], ['#"%@@@@x"'], ['#"%"'], ['#"%@@"'],
  ['#"\\ud800"'], ['#"#undefined"'], ['#"#NaN"'], ['#"#Infinity"'], ['#"#-Infinity"'], ['#["#undefined",{"u":"#undefined"}]'],
  ['#{"a":"$0.Alleged: X","b":"$0"}', ['ro+1']], ['#"$0"', ['rp+1']],
];
const decode = [];
for (const [label0, slotsIn] of decodeCases) {
  const body = label0;
  const slotList = slotsIn ?? [];
  const s = makeSlots();
  let entry;
  try {
    const v = kernelMarshal(s).fromCapData({ body, slots: slotList });
    entry = { label: `${body} ${JSON.stringify(slotList)}`, body, slots: slotList, value: toBridge(s, v) };
  } catch (e) {
    entry = { label: `${body} ${JSON.stringify(slotList)}`, body, slots: slotList, error: e.message };
  }
  decode.push(entry);
}

// --- Number::toString on many doubles ---
const numbers = [];
const hex = (x) => { const dv = new DataView(new ArrayBuffer(8)); dv.setFloat64(0, x); return dv.getBigUint64(0).toString(16).padStart(16, '0'); };
const edges = [0, -0, 1, -1, 0.1, 0.5, 1 / 3, 2 / 3, 1e21, 1e21 - 65536, 999999999999999900000, 1e-6, 1e-7, 1.5e-7, 123e-20, 5e-324, -5e-324, 2.2250738585072014e-308,
  1.7976931348623157e308, 9007199254740991, 9007199254740992, 9007199254740993, 4.35, 0.000001234, 1e100, 123456789, 1.2345678901234567e-5, 100, 1e20, 12345678901234567890];
for (const x of edges) numbers.push({ bits: hex(x), text: String(x) });
for (let e = -330; e <= 310; e++) { const x = Number(`1e${e}`); numbers.push({ bits: hex(x), text: String(x) }); numbers.push({ bits: hex(x * 1.5), text: String(x * 1.5) }); }
for (let i = 0; i < 3000; i++) {
  const x = i % 3 === 0 ? numberLike() : f64();
  if (!Number.isNaN(x)) numbers.push({ bits: hex(x), text: String(x) });
}

const wellKnownSymbols = Reflect.ownKeys(Symbol).filter((n) => typeof n === 'string' && typeof Symbol[n] === 'symbol');
const out = {
  generator: 'interop/endo/gen.mjs',
  node: process.version,
  versions: { ses: version('ses'), '@endo/marshal': version('@endo/marshal'), '@endo/pass-style': version('@endo/pass-style') },
  wellKnownSymbols, encode, decode, numbers,
};
const file = process.argv[2];
if (!file) throw Error('usage: node gen.mjs OUTPUT.json');
// One entry a line, so that a regeneration diffs readably.
const lines = (xs) => xs.map((x) => `  ${JSON.stringify(x)}`).join(',\n');
const text = `{\n${Object.entries(out).map(([k, v]) => Array.isArray(v) && typeof v[0] === 'object'
  ? ` ${JSON.stringify(k)}: [\n${lines(v)}\n ]` : ` ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n')}\n}\n`;
JSON.parse(text);
writeFileSync(file, text);
console.log(`wrote ${file}: ${encode.length} encode, ${decode.length} decode, ${numbers.length} numbers`);
