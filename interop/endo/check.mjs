// Reads Go-encoded CapData from standard input, one JSON object per line:
//   {"label": "...", "body": "#...", "slots": [...], "decodeOnly": false}
// and checks each with the real @endo/marshal (the kernel's marshal options):
// fromCapData must accept it (assertPassable included) and, unless
// decodeOnly is set, toCapData of the result must give back the same body and
// slots byte for byte. Prints one JSON line per input and a summary line
// "N passed, N failed"; exits 1 if any failed.
//   node check.mjs < capdata.jsonl
import { createInterface } from 'node:readline';
import { makeSlots, kernelMarshal } from './lib.mjs';

let passed = 0;
let failed = 0;
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === '') continue;
  const { label, body, slots, decodeOnly } = JSON.parse(line);
  const s = makeSlots();
  const m = kernelMarshal(s);
  let result;
  try {
    const v = m.fromCapData({ body, slots });
    if (decodeOnly) {
      result = { label, ok: true };
    } else {
      const again = m.toCapData(v);
      const same = again.body === body && JSON.stringify(again.slots) === JSON.stringify(slots);
      result = same ? { label, ok: true } : { label, ok: false, error: 'round trip differs', body: again.body, slots: again.slots };
    }
  } catch (e) {
    result = { label, ok: false, error: `fromCapData: ${e.message}` };
  }
  if (result.ok) passed += 1; else failed += 1;
  console.log(JSON.stringify(result));
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
