"""SMART's Python FHIR client (fhirclient, R4 models) against the local
stack with its default calls: create, read, update (PUT without If-Match),
search with paging (the client follows `next` links), delete. The client
parses every answer with its R4 models, which refuse what R4 does not
allow. Run by tests/tests/client_libraries.rs with MEDREC_BASE (the FHIR
base URL), MEDREC_TOKEN (a clinician's bearer token), MEDREC_ADMIN_TOKEN
(deletes are an administrator's) and MEDREC_TAG (a unique family name)."""

import os
import sys

import requests
from fhirclient import server as fhir_server
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

base, token, tag = os.environ["MEDREC_BASE"], os.environ["MEDREC_TOKEN"], os.environ["MEDREC_TAG"]
server = fhir_server.FHIRServer(None, base_uri=base)
server.session.headers["Authorization"] = f"Bearer {token}"
admin = fhir_server.FHIRServer(None, base_uri=base)
admin.session.headers["Authorization"] = f"Bearer {os.environ['MEDREC_ADMIN_TOKEN']}"


def patient(given):
    return Patient({
        "resourceType": "Patient",
        "name": [{"family": tag, "given": [given]}],
        "gender": "female",
        "birthDate": "1961-07-13",
    })


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


created = patient("Ada").create(server)
check(created and created.get("id"), "create answers the stored resource with its id")
pid = created["id"]

read = Patient.read(pid, server)
check(read.name[0].family == tag and read.meta.versionId == "1", "read parses with the R4 model")

read.gender = "other"
updated = read.update(server)
check(updated["meta"]["versionId"] == "2" and updated["gender"] == "other", "update without If-Match")

for given in ["Bea", "Cy", "Di", "Ed"]:
    patient(given).create(server)
found = list(Patient.where({"family": tag, "_count": "2"}).perform_resources_iter(server))
patients = [r for r in found if r.resource_type == "Patient"]
check(len(patients) == 5, f"search pages of 2 followed to the end: {len(patients)} patients")
check(len({p.id for p in patients}) == 5, "each patient once across pages")

obs = Observation({
    "resourceType": "Observation", "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
    "subject": {"reference": f"Patient/{pid}"},
    "effectiveDateTime": "2026-11-23T08:30:00Z",
    "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
})
oid = obs.create(server)["id"]
back = Observation.read(oid, server)
check(back.valueQuantity.value == 5.4 and back.subject.reference == f"Patient/{pid}", "a record reads back")
in_compartment = list(Observation.where({"patient": pid}).perform_resources_iter(server))
check([o.id for o in in_compartment if o.resource_type == "Observation"] == [oid], "compartment search")

back.delete(admin)
try:
    Observation.read(oid, server)
    check(False, "a deleted record is gone")
except requests.exceptions.HTTPError as e:
    check(e.response.status_code == 410, "a deleted record is 410 Gone")
print("fhirclient: all default calls served")
