// HL7's FHIRPath R4 suite through fhirpath.js, judged exactly as
// fhir/tests/fhirpath_suite.rs judges medrec: passed, unsupported (an
// error where an answer is expected), wrong (another answer, or an answer
// where an error is expected).
// Usage: node suite.mjs CASES.json (written by the Rust test with
// MEDREC_FHIRPATH_DUMP=CASES.json).
import { readFileSync } from 'node:fs';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';

const { cases, inputs } = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const TEMPORAL = new Set(['date', 'dateTime', 'instant', 'time']);

// An answer as the suite writes its outputs: [type, text].
function written(type, value) {
  let ty = type.startsWith('System.') ? type.slice(7) : type.slice(5);
  if (type.startsWith('System.') && ty !== 'Quantity') {
    ty = { DateTime: 'dateTime' }[ty] ?? ty.charAt(0).toLowerCase() + ty.slice(1);
  }
  let text = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
  if (type === 'System.Time' && !text.startsWith('T')) text = `T${text}`;
  if (TEMPORAL.has(ty)) text = `@${text}`;
  return [ty, text];
}

function same(got, want) {
  if (want[0] === '') return got[1] === want[1];
  if (got[0] !== want[0]) return false;
  if (got[0] === 'decimal' || got[0] === 'integer') {
    const [a, b] = [Number(got[1]), Number(want[1])];
    return !Number.isNaN(a) && a === b;
  }
  return got[1] === want[1];
}

function run(c) {
  const input = c.input === '' ? { resourceType: 'Parameters' } : inputs[c.input];
  let result;
  try {
    result = fhirpath.evaluate(input, c.expression, null, r4, { resolveInternalTypes: false, traceFn: () => {} });
    if (result instanceof Promise) throw new Error('asynchronous');
  } catch (e) {
    return c.invalid ? ['passed'] : ['unsupported', String(e.message ?? e).split('\n')[0]];
  }
  if (c.invalid) return ['wrong', 'answered where an error is expected'];
  const types = fhirpath.types(result);
  const values = fhirpath.resolveInternalTypes(result);
  const got = c.predicate ? [['boolean', String(result.length > 0)]] : values.map((v, i) => written(types[i], v));
  let matched;
  if (c.unordered) {
    const left = [...c.outputs];
    matched = got.every((g) => {
      const i = left.findIndex((w) => same(g, w));
      if (i < 0) return false;
      left.splice(i, 1);
      return true;
    });
  } else {
    matched = got.every((g, i) => i < c.outputs.length && same(g, c.outputs[i]));
  }
  return got.length === c.outputs.length && matched ? ['passed'] : ['wrong', `answered ${JSON.stringify(got)}`];
}

const counts = { passed: 0, unsupported: 0, wrong: 0 };
for (const c of cases) {
  const [outcome, why] = run(c);
  counts[outcome] += 1;
  if (outcome === 'wrong' && process.env.VERBOSE) console.log(`wrong: ${c.name}: \`${c.expression.trim()}\` expected ${JSON.stringify(c.outputs)}, ${why}`);
}
const pct = ((100 * counts.passed) / cases.length).toFixed(1);
console.log(`fhirpath.js ${fhirpath.version} on HL7 FHIRPath R4 suite: ${cases.length} cases, ${counts.passed} passed (${pct}%), ${counts.wrong} wrong, ${counts.unsupported} unsupported`);
