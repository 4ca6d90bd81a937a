//! Property-based fuzzing on stable Rust, without a fuzzing crate: seeded
//! random and mutated inputs for every parser that takes outside input (the
//! FHIR validator, FHIRPath, JSON Patch, search parameters, paging cursors,
//! HL7 v2 messages, bus events, registry credentials, and at the HTTP edge
//! raw body bytes and whole API Gateway events). The property is the
//! same everywhere: an answer (Ok or a clear Err), never a panic. A failure
//! names its seed and input. `MEDREC_FUZZ_ITERATIONS` (default 1,500 per
//! target) runs longer.

use medrec_edge::crypto::DataKey;
use medrec_edge::cursor::{Cursor, CursorCodec};
use medrec_edge::fhir::{fhirpath, json_patch, search, validator};
use serde_json::{json, Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// xorshift64*: deterministic per seed, good enough to explore.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn iterations() -> u64 {
    std::env::var("MEDREC_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500)
}

/// Runs `property` on `iterations()` generated inputs; a panic fails with
/// the seed and the input.
fn check<T: std::fmt::Debug>(target: &str, generate: impl Fn(&mut Rng) -> T, property: impl Fn(&T)) {
    for seed in 1..=iterations() {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let input = generate(&mut rng);
        if catch_unwind(AssertUnwindSafe(|| property(&input))).is_err() {
            panic!("{target}: panic on seed {seed}, input {:.500}", format!("{input:?}"));
        }
    }
    println!("{target}: {} inputs, no panic", iterations());
}

const NAMES: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "profile",
    "versionId",
    "status",
    "code",
    "coding",
    "system",
    "display",
    "text",
    "subject",
    "patient",
    "reference",
    "valueQuantity",
    "value",
    "unit",
    "effectiveDateTime",
    "occurrenceDateTime",
    "name",
    "family",
    "given",
    "birthDate",
    "gender",
    "extension",
    "url",
    "valueString",
    "contained",
    "identifier",
    "component",
    "referenceRange",
    "low",
    "high",
    "interpretation",
    "category",
    "vaccineCode",
    "lotNumber",
    "protocolApplied",
    "doseNumberPositiveInt",
    "provision",
    "actor",
    "period",
    "start",
    "end",
    "content",
    "attachment",
    "data",
    "contentType",
    "div",
    "_given",
    "modifierExtension",
    "",
    "\u{0}",
    "résumé",
];
const TYPES: &[&str] = &["Patient", "Observation", "Immunization", "Consent", "DocumentReference", "Bundle", "Foo", ""];

fn random_string(rng: &mut Rng) -> String {
    let pieces = [
        "",
        "x",
        "2026-11-23",
        "2026-13-45T25:61:00Z",
        "http://loinc.org",
        "8867-4",
        "../..",
        "<div>",
        "<script>",
        "\u{202e}",
        "😀",
        "\\",
        "\"",
        "%00",
        "9999999999999999999999",
        "-0",
        "1e400",
        "NaN",
        " ",
        "\n",
        "a|b^c",
        "Patient/123",
        "#p",
        "urn:uuid:x",
        "W/\"1\"",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(4) {
        let piece = *rng.pick::<&str>(&pieces);
        s.push_str(piece);
    }
    s
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64 >> rng.below(64)),
        3 => json!((rng.next() as f64) / (rng.below(1000) as f64 + 0.5) - 1e9),
        4 => json!(random_string(rng)),
        5 | 6 => {
            let mut m = Map::new();
            for _ in 0..rng.below(6) {
                m.insert(rng.pick(NAMES).to_string(), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
    }
}

fn seeds() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}], "birthDate": "1974-12-25",
            "gender": "male", "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]}}),
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-20T09:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
            "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2026-11-20", "primarySource": true,
            "protocolApplied": [{"doseNumberPositiveInt": 1, "seriesDosesPositiveInt": 2}]}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}),
    ]
}

/// A seed with one to four random edits: a value replaced, a key dropped or added.
fn mutated(rng: &mut Rng) -> Value {
    let mut v = rng.pick(&seeds()).clone();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut v, 3);
    }
    v
}

fn mutate(rng: &mut Rng, v: &mut Value, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() && depth > 0 && rng.below(3) > 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(rng.pick(NAMES).to_string(), random_value(rng, 2));
                }
                _ => mutate(rng, m.get_mut(&k).expect("key"), depth - 1),
            }
        }
        Value::Array(a) if !a.is_empty() && depth > 0 && rng.below(3) > 0 => {
            let i = rng.below(a.len());
            mutate(rng, &mut a[i], depth - 1);
        }
        _ => *v = random_value(rng, 2),
    }
}

#[test]
fn the_validator_answers_any_json() {
    let model = validator::model();
    check(
        "validator (random JSON)",
        |rng| {
            let mut v = random_value(rng, 4);
            if let Value::Object(m) = &mut v {
                m.insert("resourceType".into(), json!(rng.pick(TYPES)));
            }
            v
        },
        |v| {
            model.validate(v);
        },
    );
    check("validator (mutated resources)", mutated, |v| {
        model.validate(v);
    });
}

#[test]
fn fhirpath_parses_or_refuses_any_expression() {
    const TOKENS: &[&str] = &[
        "name",
        ".",
        "given",
        "where(",
        ")",
        "exists()",
        "and",
        "or",
        "implies",
        "=",
        "!=",
        "~",
        "<=",
        "'x'",
        "'",
        "%resource",
        "$this",
        "[",
        "]",
        "0",
        "-1",
        "1.5",
        "@2026-11-23",
        "@T12:00",
        "|",
        "(",
        "matches('^a+$')",
        "count()",
        "+",
        "*",
        "div",
        "is",
        "as",
        "Patient",
        "ofType(Quantity)",
        "{}",
        "iif(",
        ",",
        "\\",
        "`x`",
        "extension('http://x')",
    ];
    check(
        "fhirpath",
        |rng| (0..rng.below(12)).map(|_| *rng.pick(TOKENS)).collect::<Vec<_>>().join(" "),
        |src| {
            let _ = fhirpath::parse(src);
        },
    );
}

#[test]
fn json_patch_applies_or_refuses_any_patch() {
    const PATHS: &[&str] = &[
        "/name",
        "/name/0",
        "/name/-",
        "/name/0/given/1",
        "",
        "/",
        "/a~1b",
        "/~2",
        "/0",
        "/name/99999999999999999999",
        "/id",
    ];
    const OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test", "ADD", ""];
    check(
        "json patch",
        |rng| {
            let patch: Vec<Value> = (0..1 + rng.below(3))
            .map(|_| json!({"op": rng.pick(OPS), "path": rng.pick(PATHS), "from": rng.pick(PATHS), "value": random_value(rng, 2)}))
            .collect();
            (mutated(rng), if rng.below(8) == 0 { random_value(rng, 3) } else { json!(patch) })
        },
        |(doc, patch)| {
            let mut d = doc.clone();
            let _ = json_patch::apply(&mut d, patch, json_patch::Bounds { operations: 100, bytes: 64 * 1024 });
        },
    );
}

#[test]
fn search_parameter_values_match_or_refuse() {
    check(
        "search values",
        |rng| (random_value(rng, 3), random_string(rng) + &random_string(rng)),
        |(v, param)| {
            let _ = search::token_matches(v, param);
            let _ = search::prefixed(param);
            let _ = search::quantity_matches(v, param);
            if let Some(range) = search::date_range(v) {
                let _ = search::date_matches(range, param);
            }
            let _ = medrec_edge::fhir::primitives::datetime_bounds(param);
        },
    );
}

#[test]
fn cursors_decode_or_refuse_any_token() {
    let codec = CursorCodec::new(DataKey::from_slice(&[7; 32]).unwrap());
    let real =
        codec.encode(&Cursor { q: vec![], after: "abc".into(), exp: i64::MAX, total: None }, "dr-1", "/fhir/Patient");
    check(
        "cursors",
        |rng| {
            let mut t = real.clone().into_bytes();
            match rng.below(3) {
                0 => random_string(rng),
                1 => {
                    for _ in 0..1 + rng.below(3) {
                        let i = rng.below(t.len());
                        t[i] = *rng.pick(b"AZaz09-_.+/=\x00\xff");
                    }
                    String::from_utf8_lossy(&t).into_owned()
                }
                _ => t[..rng.below(t.len())].iter().map(|b| *b as char).collect(),
            }
        },
        |token| {
            assert!(codec.decode(token, "dr-1", "/fhir/Patient", 0).is_err() || token == &real);
        },
    );
}

#[test]
fn hl7_events_and_secrets_parse_or_refuse() {
    use medrec_edge::registry::hl7;
    const SEGMENTS: &[&str] = &[
        "MSH|^~\\&|IRIS|IRIS|MEDREC|M|20261123||ACK^V04^ACK|c|P|2.5.1",
        "MSH|^~\\&",
        "MSA|AA|ctl",
        "MSA|",
        "ERR|||207^x^HL70357|E",
        "QAK|t|OK",
        "RXA|0|1|20250110||141^^CVX|999",
        "ORC|RE||IRIS-1^IRIS",
        "PID|1||p1^^^MEDREC^MR",
        "||||",
        "^^^",
        "~~",
        "\\E\\",
        "MSH|^~\\&|a|b|c|d|e||RSP^K11^RSP_K11|x",
    ];
    check(
        "hl7 v2",
        |rng| {
            (0..rng.below(6)).map(|_| *rng.pick(SEGMENTS)).collect::<Vec<_>>().join(if rng.below(2) == 0 {
                "\r"
            } else {
                "\n"
            })
        },
        |text| {
            let _ = hl7::parse_ack(text);
            let _ = hl7::parse_rsp(text);
            if let Ok(m) = hl7::Message::parse(text) {
                for seg in ["MSH", "MSA", "RXA", "QPD"] {
                    for field in 0..25 {
                        let _ = m.get(seg, field, 1 + field % 3);
                    }
                }
            }
        },
    );
    check(
        "bus events and secrets",
        |rng| random_value(rng, 4).to_string(),
        |text| {
            let _ = medrec_edge::events::Envelope::from_bus_message(text);
            let _ = medrec_edge::registry::client::Credentials::from_json(text);
        },
    );
}

/// Byte-level mutations of a serialised resource: bytes flipped, inserted
/// and removed (invalid UTF-8 and JSON structure among them), truncation,
/// repetition and deep nesting: what reaches the JSON parser from the wire.
fn mutated_bytes(rng: &mut Rng) -> Vec<u8> {
    const BYTES: &[u8] = b"{}[]\",:\\ \x00\x7f\x80\xc3\xff\xef\xbb\xbfe0-.+tnu";
    let mut b = mutated(rng).to_string().into_bytes();
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if i < b.len() => b[i] = *rng.pick(BYTES),
            1 => b.insert(i, *rng.pick(BYTES)),
            2 if i < b.len() => {
                b.remove(i);
            }
            3 => b.truncate(i),
            4 => {
                let j = rng.below(b.len() + 1);
                let piece = b[i.min(j)..i.max(j)].to_vec();
                let at = i.max(j);
                b.splice(at..at, piece.iter().copied().cycle().take(piece.len() * (1 + rng.below(3))));
            }
            _ => {
                let depth = rng.below(400);
                b = [vec![b'['; depth], b, vec![b']'; depth]].concat();
            }
        }
    }
    b
}

const MEDIA: &[&str] = &[
    "application/fhir+json",
    "application/json; charset=utf-8",
    "application/json-patch+json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "APPLICATION/FHIR+JSON;;",
    "",
    "\u{7f}",
];

#[test]
fn fhir_json_bodies_parse_or_refuse_any_bytes() {
    let model = validator::model();
    check(
        "FHIR JSON bodies (bytes)",
        |rng| (rng.pick(MEDIA).to_string(), mutated_bytes(rng)),
        |(media, bytes)| {
            let mut req = lambda_http::Request::new(lambda_http::Body::Binary(bytes.clone()));
            if let Ok(v) = lambda_http::http::HeaderValue::from_str(media) {
                req.headers_mut().insert("content-type", v);
            }
            if let Ok(v) = medrec_edge::http::json_body(&req, 1 << 20) {
                model.validate(&v);
            }
            let _ = medrec_edge::http::json_patch_body(&req, 1 << 20);
            let _ = medrec_edge::http::form_body(&req, 1 << 20);
        },
    );
}

/// The route table every function shares (`api::operations`), as `lambda::route` takes it.
fn routes() -> &'static [medrec_edge::lambda::Route] {
    static ROUTES: std::sync::OnceLock<Vec<medrec_edge::lambda::Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        medrec_edge::api::operations()
            .into_iter()
            .map(|o| medrec_edge::lambda::Route {
                method: o.method,
                path: Box::leak(o.path.into_boxed_str()),
                interaction: "fuzz",
            })
            .collect()
    })
}

/// An API Gateway HTTP API (payload 2.0) event as it could reach a
/// function: any path the routes name with random segments, any query,
/// header values and body bytes (base64 when not UTF-8, or claimed so).
fn api_gateway_event(rng: &mut Rng) -> String {
    const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "FOO"];
    const SEGMENTS: &[&str] = &["", "..", "%2F", "%00", "a%zz", "_history", "_search", "$everything", "é", "0", "-1"];
    const HEADERS: &[&str] = &[
        "if-match",
        "if-none-exist",
        "prefer",
        "accept",
        "range",
        "host",
        "x-purpose-of-use",
        "x-break-glass-reason",
        "authorization",
        "content-length",
    ];
    let ops = routes();
    let op = &ops[rng.below(ops.len())];
    let path: String = op
        .path
        .split('/')
        .map(|s| match s.starts_with('{') {
            true if rng.below(2) == 0 => rng.pick(SEGMENTS).to_string(),
            true => random_string(rng),
            false => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/");
    let mut query: Vec<String> =
        (0..rng.below(4)).map(|_| format!("{}={}", rng.pick(NAMES), random_string(rng).replace('&', "%26"))).collect();
    if rng.below(4) == 0 {
        query.push(rng.pick(&["_summary=x", "_count=0", "_elements=", "_include=*", "%"]).to_string());
    }
    let mut headers = Map::new();
    headers.insert("content-type".into(), json!(rng.pick(MEDIA)));
    for _ in 0..rng.below(5) {
        let value = match rng.below(3) {
            0 => random_string(rng),
            1 => rng
                .pick(&["W/\"1\"", "\"0\"", "bytes=5-1", "bytes=0-", "ETREAT", "Bearer ", "*/*", "return=minimal"])
                .to_string(),
            _ => "x".repeat(rng.below(10_000)),
        };
        headers.insert(rng.pick(HEADERS).to_string(), json!(value));
    }
    let bytes = mutated_bytes(rng);
    let (body, base64) = match (String::from_utf8(bytes.clone()), rng.below(5)) {
        (_, 0) => (random_string(rng), true),
        (Ok(text), _) => (text, false),
        (Err(_), _) => (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes), true),
    };
    let method = rng.pick(METHODS);
    json!({
        "version": "2.0",
        "routeKey": format!("{} {}", op.method, op.path),
        "rawPath": path,
        "rawQueryString": query.join("&"),
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": random_string(rng), "userAgent": ""},
            "stage": rng.pick(&["$default", "prod", ""]),
            "requestId": random_string(rng),
            "accountId": "123456789012", "apiId": "api", "domainName": "example.org", "domainPrefix": "example",
            "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": base64
    })
    .to_string()
}

#[test]
fn the_http_edge_answers_any_api_gateway_event() {
    use medrec_edge::{http, rest};
    let model = validator::model();
    check("HTTP edge (API Gateway events)", api_gateway_event, |event| {
        // An event that is not one never reaches medrec (the runtime
        // refuses the invocation); API Gateway sends well-formed events.
        let Ok(event) = serde_json::from_str(event) else { return };
        let req = match medrec_edge::lambda::request_from_event(event) {
            Ok(req) => req,
            Err(e) => {
                assert_eq!(http::error_response(&e).status(), 400);
                return;
            }
        };
        let path = http::path(&req);
        let method = req.method().as_str().to_owned();
        let _ = http::error_response_at(&medrec_edge::error::Error::MethodNotAllowed, &path);
        let params = match medrec_edge::lambda::route(routes(), &method, &path) {
            Ok((_, params)) => params,
            Err(e) => {
                http::error_response(&e);
                vec![]
            }
        };
        if let Some(v) = params.last() {
            let _ = rest::version_id(v);
        }
        let _ = http::origin(&req);
        let _ = http::base_url(&req, None);
        let _ = http::check_accept(&req);
        let _ = http::if_match(&req);
        let _ = medrec_edge::auth::Purpose::parse(http::purpose_headers(&req), &Default::default());
        if let Some(range) = http::header(&req, "range") {
            let _ = medrec_edge::service::documents::parse_range(range, 1 << 20);
        }
        let _ = rest::history_params(&req);
        if let Ok(mut query) = rest::search_query(&method, &req, 1 << 20) {
            let ty = path.split('/').nth(2).unwrap_or("Patient");
            let _ = rest::ResultParams::take(&mut query, ty);
        }
        if let Ok(v) = http::json_body(&req, 1 << 20) {
            model.validate(&v);
        }
        let _ = http::json_patch_body(&req, 1 << 20);
    });
}
