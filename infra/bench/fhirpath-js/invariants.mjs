// The work of `cargo bench -p medrec-fhir --bench invariant_pass`, done by
// fhirpath.js: every R4 invariant declared on a resource's own elements
// (from medrec's generated model, which copies them from the definitions),
// compiled once, evaluated at each node its path reaches, over the official
// examples. Prints evaluations, outcomes and time per round (3 rounds).
// Usage: node invariants.mjs MODEL.json EXAMPLES_DIR
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';

const [modelFile, dir] = process.argv.slice(2);
// Invariants that call trace() would print; medrec's trace() is silent too.
const QUIET = { traceFn: () => {} };
const model = JSON.parse(readFileSync(modelFile, 'utf8'));
const invariants = new Map();
for (const [ty, elements] of Object.entries(model.elements)) {
  if (model.types[ty]?.kind !== 'resource') continue;
  for (const el of elements) {
    for (const inv of el.inv ?? []) {
      let path, expression;
      try {
        path = fhirpath.compile(el.p, r4, QUIET);
        expression = fhirpath.compile({ base: el.p, expression: inv[3] }, r4, QUIET);
      } catch {
        continue;
      }
      if (!invariants.has(ty)) invariants.set(ty, []);
      invariants.get(ty).push({ path, expression });
    }
  }
}
const corpus = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && f !== 'package.json')
  .map((f) => {
    try {
      return JSON.parse(readFileSync(join(dir, f), 'utf8'));
    } catch {
      return null;
    }
  })
  .filter((r) => r && typeof r.resourceType === 'string');

const rounds = 3;
let counts;
const started = process.hrtime.bigint();
for (let round = 0; round < rounds; round++) {
  counts = { evaluations: 0, trues: 0, falses: 0, errors: 0 };
  for (const resource of corpus) {
    for (const inv of invariants.get(resource.resourceType) ?? []) {
      let nodes;
      try {
        nodes = inv.path(resource);
      } catch {
        continue;
      }
      for (const node of nodes) {
        if (node === null || typeof node !== 'object') continue;
        counts.evaluations += 1;
        try {
          const r = inv.expression(node, { resource, rootResource: resource });
          if (r.length === 1 && r[0] === false) counts.falses += 1;
          else counts.trues += 1;
        } catch {
          counts.errors += 1;
        }
      }
    }
  }
}
const secs = Number(process.hrtime.bigint() - started) / 1e9 / rounds;
console.log(
  `fhirpath.js ${fhirpath.version}: ${corpus.length} resources, ${counts.evaluations} invariant evaluations (${counts.trues} true or empty, ${counts.falses} false, ${counts.errors} errors) in ${secs.toFixed(3)}s = ${Math.round(counts.evaluations / secs)}/s`,
);
