"""Independent validator for issue 4's comparison: Python fhir.resources (R4).

Setup (a throwaway venv; not a project dependency):
    python3 -m venv /tmp/fhirres
    /tmp/fhirres/bin/pip install "fhir.resources==6.5.0" "pydantic==1.10.13"
Run (the bench runs it after medrec's rounds and prints the ratio):
    FHIR_RESOURCES_PYTHON=/tmp/fhirres/bin/python cargo bench -p medrec-fhir --bench validator_corpus
or alone:
    /tmp/fhirres/bin/python infra/bench/fhir_resources_verdicts.py DIR OUT.json

Parses and validates every example from in-memory bytes (the same work the
Rust bench times), prints resources/s, and writes {file: null | error} to
OUT.json for `cargo bench -p medrec-fhir --bench validator_corpus`.
"""
import json
import os
import sys
import time

from fhir.resources import construct_fhir_element

directory, out = sys.argv[1], sys.argv[2]
blobs = {}
for name in sorted(os.listdir(directory)):
    if name.endswith(".json") and name != "package.json":
        with open(os.path.join(directory, name), "rb") as f:
            blobs[name] = f.read()

verdicts = {}
started = time.perf_counter()
for name, blob in blobs.items():
    try:
        data = json.loads(blob)
        construct_fhir_element(data["resourceType"], data)
        verdicts[name] = None
    except Exception as e:  # noqa: BLE001 - every failure is a verdict
        # The first failing location and message, not only the error count.
        lines = str(e).splitlines()
        verdicts[name] = " | ".join(lines[1:3])[:200] if len(lines) > 2 else (lines[0][:200] if lines else type(e).__name__)
elapsed = time.perf_counter() - started
valid = sum(v is None for v in verdicts.values())
print(f"fhir.resources: {len(verdicts)} resources in {elapsed:.2f}s = {len(verdicts) / elapsed:.0f}/s; {valid} valid")
with open(out, "w") as f:
    json.dump(verdicts, f)
