//! Property-based fuzzing with `proptest`: generated and mutated inputs for
//! every parser that takes outside input (the FHIR validator, FHIRPath,
//! JSON Patch, search parameters, paging cursors, HL7 v2 messages, bus
//! events, registry credentials, and at the HTTP edge raw body bytes and
//! whole API Gateway events). The property is the same everywhere: an
//! answer (Ok or a clear Err), never a panic.
//!
//! Inputs are built from structured choices (a seed resource and the edits
//! made to it, a route and the segments put in it), so a failure shrinks to
//! the fewest, smallest edits that still panic, and proptest saves its seed
//! in `fuzz.proptest-regressions` beside this file, replayed first from
//! then on (commit it).
//! `PROPTEST_CASES` (default 1,500 per target) runs longer,
//! `PROPTEST_RNG_SEED` draws other inputs.

use medrec_edge::crypto::DataKey;
use medrec_edge::cursor::{Cursor, CursorCodec};
use medrec_edge::fhir::{fhirpath, json_patch, search, validator};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::RngSeed;
use serde_json::{json, Map, Value};

/// 1,500 cases per target unless `PROPTEST_CASES` says, from the same seed
/// on every run unless `PROPTEST_RNG_SEED` says: CI answers for the change
/// it tests, not for an input it happened to draw that day; a longer run
/// with another seed explores.
fn config() -> ProptestConfig {
    let defaults = ProptestConfig::default();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500);
    let rng_seed = match defaults.rng_seed {
        RngSeed::Random => RngSeed::Fixed(20_261_207),
        chosen => chosen,
    };
    ProptestConfig { cases, rng_seed, ..defaults }
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

/// Pieces that reach parsers' edge cases: dates out of range, paths,
/// markup, bidi overrides, escapes, huge and odd numbers, HL7 delimiters,
/// references and ETags.
const PIECES: &[&str] = &[
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

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(select(PIECES), 0..4).prop_map(|pieces| pieces.concat())
}

/// Any JSON value `depth` levels deep at most, objects keyed by FHIR names.
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((select(NAMES), inner.clone()), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            prop::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
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

/// One edit to a resource: down a path (a member or item chosen at each
/// level, as far as the containers go), then the member there removed, a
/// member added beside it, or the value replaced.
#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Add(&'static str, Value),
    Replace(Value),
}

fn edit() -> impl Strategy<Value = (Vec<Index>, Edit)> {
    let edit = prop_oneof![
        1 => Just(Edit::Remove),
        1 => (select(NAMES), json_value(2)).prop_map(|(name, v)| Edit::Add(name, v)),
        2 => json_value(2).prop_map(Edit::Replace),
    ];
    (prop::collection::vec(any::<Index>(), 0..4), edit)
}

fn apply(v: &mut Value, path: &[Index], edit: &Edit) {
    match (v, path.split_first()) {
        (Value::Object(m), Some((at, rest))) if !m.is_empty() => {
            let key = m.keys().nth(at.index(m.len())).cloned().unwrap_or_default();
            match edit {
                _ if !rest.is_empty() => apply(m.entry(key).or_insert(Value::Null), rest, edit),
                Edit::Remove => {
                    m.remove(&key);
                }
                Edit::Add(name, value) => {
                    m.insert((*name).to_owned(), value.clone());
                }
                Edit::Replace(value) => {
                    m.insert(key, value.clone());
                }
            }
        }
        (Value::Array(a), Some((at, rest))) if !a.is_empty() => {
            let i = at.index(a.len());
            apply(&mut a[i], rest, edit)
        }
        (v, _) => {
            if let Edit::Replace(value) | Edit::Add(_, value) = edit {
                *v = value.clone();
            }
        }
    }
}

/// A seed resource with one to four edits.
fn mutated() -> impl Strategy<Value = Value> {
    (select(seeds()), prop::collection::vec(edit(), 1..=4)).prop_map(|(mut v, edits)| {
        for (path, e) in &edits {
            apply(&mut v, path, e);
        }
        v
    })
}

/// Byte-level edits of a serialised resource: what reaches the JSON parser
/// from the wire (invalid UTF-8 and broken structure among them).
#[derive(Debug, Clone)]
enum ByteEdit {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// A span repeated one to three more times.
    Repeat(Index, Index, usize),
    /// The whole nested this many arrays deep.
    Nest(usize),
}

const BYTES: &[u8] = b"{}[]\",:\\ \x00\x7f\x80\xc3\xff\xef\xbb\xbfe0-.+tnu";

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let byte = || select(BYTES);
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), byte()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Remove),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), any::<Index>(), 1..=3usize).prop_map(|(i, j, n)| ByteEdit::Repeat(i, j, n)),
        (0..400usize).prop_map(ByteEdit::Nest),
    ]
}

fn mutated_bytes() -> impl Strategy<Value = Vec<u8>> {
    (mutated(), prop::collection::vec(byte_edit(), 1..=4)).prop_map(|(v, edits)| {
        let mut b = v.to_string().into_bytes();
        for e in edits {
            let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
            match e {
                ByteEdit::Set(i, byte) if !b.is_empty() => {
                    let i = i.index(b.len());
                    b[i] = byte;
                }
                ByteEdit::Insert(i, byte) => {
                    let i = at(&i, &b);
                    b.insert(i, byte);
                }
                ByteEdit::Remove(i) if !b.is_empty() => {
                    b.remove(i.index(b.len()));
                }
                ByteEdit::Truncate(i) => {
                    let i = at(&i, &b);
                    b.truncate(i);
                }
                ByteEdit::Repeat(i, j, n) => {
                    let (i, j) = (at(&i, &b), at(&j, &b));
                    let piece = b[i.min(j)..i.max(j)].to_vec();
                    let end = i.max(j);
                    b.splice(end..end, piece.iter().copied().cycle().take(piece.len() * n));
                }
                ByteEdit::Nest(depth) => b = [vec![b'['; depth], b, vec![b']'; depth]].concat(),
                _ => {}
            }
        }
        b
    })
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_validator_answers_any_json(v in json_value(4), ty in select(TYPES)) {
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.insert("resourceType".into(), json!(ty));
        }
        validator::model().validate(&v);
    }

    #[test]
    fn the_validator_answers_any_mutated_resource(v in mutated()) {
        validator::model().validate(&v);
    }

    #[test]
    fn fhirpath_parses_or_refuses_any_expression(tokens in prop::collection::vec(select(FHIRPATH_TOKENS), 0..12)) {
        let _ = fhirpath::parse(&tokens.join(" "));
    }

    #[test]
    fn json_patch_applies_or_refuses_any_patch(
        doc in mutated(),
        ops in prop::collection::vec((select(PATCH_OPS), select(PATCH_PATHS), select(PATCH_PATHS), json_value(2)), 1..=3),
        not_a_list in prop::option::weighted(0.125, json_value(3)),
    ) {
        let patch = not_a_list.unwrap_or_else(|| {
            json!(ops.iter().map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value})).collect::<Vec<_>>())
        });
        let mut d = doc;
        let _ = json_patch::apply(&mut d, &patch, json_patch::Bounds { operations: 100, bytes: 64 * 1024 });
    }

    #[test]
    fn search_parameter_values_match_or_refuse(v in json_value(3), a in text(), b in text()) {
        let param = a + &b;
        let _ = search::token_matches(&v, &param);
        let _ = search::prefixed(&param);
        let _ = search::quantity_matches(&v, &param);
        if let Some(range) = search::date_range(&v) {
            let _ = search::date_matches(range, &param);
        }
        let _ = medrec_edge::fhir::primitives::datetime_bounds(&param);
    }

    #[test]
    fn cursors_decode_or_refuse_any_token(token in cursor_token()) {
        let (codec, real) = cursor_codec();
        prop_assert!(codec.decode(&token, "dr-1", "/fhir/Patient", 0).is_err() || token == *real);
    }

    #[test]
    fn hl7_messages_parse_or_refuse(segments in prop::collection::vec(select(HL7_SEGMENTS), 0..6), separator in select(&["\r", "\n"][..])) {
        use medrec_edge::registry::hl7;
        let text = segments.join(separator);
        let _ = hl7::parse_ack(&text);
        let _ = hl7::parse_rsp(&text);
        if let Ok(m) = hl7::Message::parse(&text) {
            for seg in ["MSH", "MSA", "RXA", "QPD"] {
                for field in 0..25 {
                    let _ = m.get(seg, field, 1 + field % 3);
                }
            }
        }
    }

    #[test]
    fn bus_events_and_secrets_parse_or_refuse(v in json_value(4)) {
        let text = v.to_string();
        let _ = medrec_edge::events::Envelope::from_bus_message(&text);
        let _ = medrec_edge::registry::client::Credentials::from_json(&text);
    }

    #[test]
    fn fhir_json_bodies_parse_or_refuse_any_bytes(media in select(MEDIA), bytes in mutated_bytes()) {
        let mut req = lambda_http::Request::new(lambda_http::Body::Binary(bytes));
        if let Ok(v) = lambda_http::http::HeaderValue::from_str(media) {
            req.headers_mut().insert("content-type", v);
        }
        if let Ok(v) = medrec_edge::http::json_body(&req, 1 << 20) {
            validator::model().validate(&v);
        }
        let _ = medrec_edge::http::json_patch_body(&req, 1 << 20);
        let _ = medrec_edge::http::form_body(&req, 1 << 20);
    }

    #[test]
    fn the_http_edge_answers_any_api_gateway_event(event in api_gateway_event()) {
        through_the_edge(event)?;
    }
}

const FHIRPATH_TOKENS: &[&str] = &[
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

const PATCH_PATHS: &[&str] = &[
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
const PATCH_OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test", "ADD", ""];

const HL7_SEGMENTS: &[&str] = &[
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

/// A codec and a token it sealed, built once.
fn cursor_codec() -> &'static (CursorCodec, String) {
    static CODEC: std::sync::OnceLock<(CursorCodec, String)> = std::sync::OnceLock::new();
    CODEC.get_or_init(|| {
        let codec = CursorCodec::new(DataKey::from_slice(&[7; 32]).unwrap());
        let real = codec.encode(
            &Cursor { q: vec![], after: "abc".into(), exp: i64::MAX, total: None },
            "dr-1",
            "/fhir/Patient",
        );
        (codec, real)
    })
}

/// Any text, the sealed token with bytes changed, or the token cut short.
fn cursor_token() -> impl Strategy<Value = String> {
    let real = || cursor_codec().1.clone().into_bytes();
    prop_oneof![
        text(),
        prop::collection::vec((any::<Index>(), select(&b"AZaz09-_.+/=\x00\xff"[..])), 1..=3).prop_map(move |changes| {
            let mut t = real();
            for (i, b) in changes {
                let i = i.index(t.len());
                t[i] = b;
            }
            String::from_utf8_lossy(&t).into_owned()
        }),
        any::<Index>().prop_map(move |i| {
            let t = real();
            t[..i.index(t.len())].iter().map(|b| *b as char).collect()
        }),
    ]
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
const HEADER_VALUES: &[&str] =
    &["W/\"1\"", "\"0\"", "bytes=5-1", "bytes=0-", "ETREAT", "Bearer ", "*/*", "return=minimal"];
const RESULT_PARAMS: &[&str] = &["_summary=x", "_count=0", "_elements=", "_include=*", "%"];

/// An API Gateway HTTP API (payload 2.0) event as it could reach a
/// function: any path the routes name with its parameters replaced by odd
/// segments or text, any query, header values and body bytes (base64 when
/// not UTF-8, or claimed so).
fn api_gateway_event() -> impl Strategy<Value = String> {
    let segment = prop_oneof![select(SEGMENTS).prop_map(str::to_owned), text()];
    let header_value = prop_oneof![
        text(),
        select(HEADER_VALUES).prop_map(str::to_owned),
        (0..10_000usize).prop_map(|n| "x".repeat(n))
    ];
    let route = (0..routes().len(), prop::collection::vec(segment, 4));
    let query =
        (prop::collection::vec((select(NAMES), text()), 0..4), prop::option::weighted(0.25, select(RESULT_PARAMS)));
    let headers = (select(MEDIA), prop::collection::vec((select(HEADERS), header_value), 0..5));
    let body = (mutated_bytes(), prop::option::weighted(0.2, text()));
    let context = (select(METHODS), text(), select(&["$default", "prod", ""][..]), text());
    (route, query, headers, body, context).prop_map(
        |(
            (op, segments),
            (pairs, result),
            (media, headers),
            (bytes, claimed_base64),
            (method, ip, stage, request_id),
        )| {
            let op = &routes()[op];
            let mut segments = segments.into_iter();
            let path: String = op
                .path
                .split('/')
                .map(|s| match s.starts_with('{') {
                    true => segments.next().unwrap_or_default(),
                    false => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let mut query: Vec<String> =
                pairs.into_iter().map(|(k, v)| format!("{k}={}", v.replace('&', "%26"))).collect();
            query.extend(result.map(str::to_owned));
            let mut header_map = Map::new();
            header_map.insert("content-type".into(), json!(media));
            for (k, v) in headers {
                header_map.insert(k.to_owned(), json!(v));
            }
            let (body, base64) = match (claimed_base64, String::from_utf8(bytes.clone())) {
                (Some(text), _) => (text, true),
                (None, Ok(text)) => (text, false),
                (None, Err(_)) => (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes), true),
            };
            json!({
                "version": "2.0",
                "routeKey": format!("{} {}", op.method, op.path),
                "rawPath": path,
                "rawQueryString": query.join("&"),
                "headers": header_map,
                "requestContext": {
                    "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": ""},
                    "stage": stage,
                    "requestId": request_id,
                    "accountId": "123456789012", "apiId": "api", "domainName": "example.org", "domainPrefix": "example",
                    "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0
                },
                "body": body,
                "isBase64Encoded": base64
            })
            .to_string()
        },
    )
}

/// The event through everything the edge does before a handler: event to
/// request, routing, headers, ranges, purposes, search and result
/// parameters, bodies.
fn through_the_edge(event: String) -> Result<(), TestCaseError> {
    use medrec_edge::{http, rest};
    // An event that is not one never reaches medrec (the runtime refuses
    // the invocation); API Gateway sends well-formed events.
    let Ok(event) = serde_json::from_str(&event) else { return Ok(()) };
    let req = match medrec_edge::lambda::request_from_event(event) {
        Ok(req) => req,
        Err(e) => {
            prop_assert_eq!(http::error_response(&e).status(), 400);
            return Ok(());
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
        validator::model().validate(&v);
    }
    let _ = http::json_patch_body(&req, 1 << 20);
    Ok(())
}
