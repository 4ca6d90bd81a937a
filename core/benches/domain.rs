//! Domain benchmarks: PHI encryption, validation, blind indexing, token
//! verification, and the Patient use cases' CPU time over in-memory ports
//! (AWS latency excluded; the AWS call counts are in tests/benches).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use medrec_core::auth::jwks::{AuthError, JwksCache, KeySetSource};
use medrec_core::auth::jwt::{TokenPolicy, Verifier};
use medrec_core::auth::policy::Scope;
use medrec_core::auth::{Principal, Purpose, Role};
use medrec_core::crypto::blind::BlindIndex;
use medrec_core::crypto::{open, resource_aad, seal, DataKey};
use medrec_core::documents::{DocumentConfig, TestSignatureScanner};
use medrec_core::memory::MemoryBlobs;
use medrec_core::service::documents::{Created, DocumentDeps, Uploads};
use medrec_core::service::Caller;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Duration;

fn typical_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": "12345678"}, {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-99-9999"}],
        "active": true,
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}, {"use": "usual", "given": ["Jim"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}, {"system": "email", "value": "p@example.org"}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "state": "Vic", "postalCode": "3999"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "managingOrganization": {"reference": "Organization/1"}
    })
}

struct StaticJwks(Vec<u8>);

impl KeySetSource for StaticJwks {
    async fn fetch(&self) -> Result<Vec<u8>, AuthError> {
        Ok(self.0.clone())
    }
}

fn caller() -> Caller {
    Caller {
        principal: Principal {
            subject: "dr-bench".into(),
            roles: vec![Role::Clinician],
            scopes: vec![Scope::parse("user/*.cruds").unwrap()],
            patient: None,
            fhir_user: None,
            token_id: None,
        },
        purpose: Purpose::treatment(),
        source_ip: Some("127.0.0.1".into()),
        request_id: None,
    }
}

fn benches(c: &mut Criterion) {
    let patient = typical_patient();
    let bytes = patient.to_string().into_bytes();
    let key = DataKey::random();
    let aad = resource_aad("p1", "Patient", "p1", 1);
    let sealed = seal(&key, &aad, &bytes);
    println!("typical Patient: {} bytes plaintext, {} bytes sealed", bytes.len(), sealed.len());
    c.bench_function("seal Patient (AES-256-GCM)", |b| b.iter(|| seal(&key, &aad, black_box(&bytes))));
    c.bench_function("open Patient (AES-256-GCM)", |b| b.iter(|| open(&key, &aad, black_box(&sealed)).unwrap()));
    c.bench_function("validate Patient", |b| b.iter(|| medrec_core::fhir::patient::validate(black_box(&patient))));
    let index = BlindIndex::new(DataKey::random());
    c.bench_function("blind-index tokens of a Patient", |b| {
        b.iter(|| {
            medrec_core::fhir::patient::search_values(black_box(&patient))
                .iter()
                .map(|(p, v)| index.token("Patient", p, v))
                .collect::<Vec<_>>()
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
    let policy = TokenPolicy {
        issuer: "https://issuer".into(),
        audience: "medrec".into(),
        roles_claim: "cognito:groups".into(),
        clock_skew: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(3600),
    };
    let verifier = Verifier::new(policy, JwksCache::new(StaticJwks(jwks.to_string().into_bytes()), false));
    let now = 1_900_000_000;
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "k1"}).to_string());
    let cl = URL_SAFE_NO_PAD.encode(
        json!({"iss": "https://issuer", "aud": "medrec", "sub": "dr", "exp": now + 600, "cognito:groups": ["clinician"], "scope": "user/*.cruds"}).to_string(),
    );
    let sig = pair.sign(&SystemRandom::new(), format!("{h}.{cl}").as_bytes()).unwrap();
    let auth = format!("Bearer {h}.{cl}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    c.bench_function("verify ES256 bearer token (warm JWKS)", |b| {
        b.iter(|| rt.block_on(verifier.verify(Some(black_box(&auth)), now)).unwrap())
    });

    // A fresh store per group: the in-memory store scans where DynamoDB
    // queries one partition, so thousands of benchmark creates would slow
    // the reads measured after them.
    let services = || medrec_core::memory::services("bench");
    let svc = services();
    let who = caller();
    c.bench_function("create Patient use case (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "create");
            rt.block_on(svc.create_record(&who, "Patient", patient.clone(), &mut audit)).unwrap()
        })
    });
    let svc = services();
    let mut audit = svc.draft(Some(&who), "create");
    let id = rt.block_on(svc.create_record(&who, "Patient", patient.clone(), &mut audit)).unwrap().id;
    c.bench_function("read Patient use case, warm key (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "read");
            rt.block_on(svc.read_record(&who, "Patient", &id, None, &mut audit)).unwrap()
        })
    });

    // Clinical records, consent and documents in the patient's compartment.
    let immunization = json!({
        "resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "08"}]},
        "patient": {"reference": format!("Patient/{id}")}, "occurrenceDateTime": "2026-11-20T09:00:00Z",
        "primarySource": true, "lotNumber": "LOT-1", "expirationDate": "2027-06-30"
    });
    let weight = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-3"}]},
        "subject": {"reference": format!("Patient/{id}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 160, "unit": "lb", "system": "http://unitsofmeasure.org", "code": "[lb_av]"}
    });
    for (name, body) in [("Immunization", &immunization), ("Observation", &weight)] {
        c.bench_function(&format!("create {name} use case (in-memory ports)"), |b| {
            b.iter(|| {
                let mut audit = svc.draft(Some(&who), "create");
                rt.block_on(svc.create_record(&who, name, body.clone(), &mut audit)).unwrap()
            })
        });
    }
    // Reads in a compartment of 20 Observations and 5 Immunizations.
    let svc = services();
    let mut audit = svc.draft(Some(&who), "create");
    let id = rt.block_on(svc.create_record(&who, "Patient", patient.clone(), &mut audit)).unwrap().id;
    let in_compartment = |mut r: Value, element: &str| {
        r[element]["reference"] = json!(format!("Patient/{id}"));
        r
    };
    for _ in 0..5 {
        let mut audit = svc.draft(Some(&who), "create");
        rt.block_on(svc.create_record(
            &who,
            "Immunization",
            in_compartment(immunization.clone(), "patient"),
            &mut audit,
        ))
        .unwrap();
    }
    let mut obs = String::new();
    for _ in 0..20 {
        let mut audit = svc.draft(Some(&who), "create");
        obs = rt
            .block_on(svc.create_record(&who, "Observation", in_compartment(weight.clone(), "subject"), &mut audit))
            .unwrap()
            .id;
    }
    c.bench_function("read Observation use case, warm key (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "read");
            rt.block_on(svc.read_record(&who, "Observation", &obs, None, &mut audit)).unwrap()
        })
    });
    let query = vec![
        ("patient".to_owned(), id.clone()),
        ("value-quantity".to_owned(), "gt70|http://unitsofmeasure.org|kg".to_owned()),
    ];
    c.bench_function("Observation search in a compartment (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "search-type");
            rt.block_on(svc.search_records(&who, "Observation", query.clone(), &mut audit)).unwrap()
        })
    });
    let blobs = MemoryBlobs::default();
    let config = DocumentConfig::from_lookup(|k| match k {
        "MEDREC_DOCUMENTS_BUCKET" | "MEDREC_UPLOADS_BUCKET" => Some("bench".into()),
        _ => None,
    })
    .unwrap();
    let deps =
        DocumentDeps { blobs: &blobs, config: &config, scanner: &TestSignatureScanner, uploads: Uploads::Offered };
    let note = vec![b'n'; 64 * 1024];
    let document = json!({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{id}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": STANDARD.encode(&note)}}]
    });
    let mut binary = String::new();
    c.bench_function("create DocumentReference, 64 KiB inline (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "create");
            match rt.block_on(svc.create_document(&who, document.clone(), &deps, &mut audit)).unwrap() {
                Created::Stored(s) => {
                    binary = s.resource["content"][0]["attachment"]["url"].as_str().unwrap()[7..].to_owned()
                }
                Created::Pending { .. } => unreachable!(),
            }
        })
    });
    c.bench_function("read Binary, 64 KiB (in-memory ports)", |b| {
        b.iter(|| {
            let mut audit = svc.draft(Some(&who), "read");
            rt.block_on(svc.read_binary(&who, &binary, None, &deps, &mut audit)).unwrap()
        })
    });
}

criterion_group! {
    name = domain;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(domain);
