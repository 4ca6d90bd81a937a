//! Known-answer vectors for the formats medrec writes and other parties (or
//! a later medrec) must read: the service key schedule, blind-index tokens,
//! the audit chain MAC, the registry's request signature, the record
//! envelope, paging cursors and the document envelope.
//!
//! The HL7 v2.5.1 messages at the end are written by hand, field by field,
//! from CDC's implementation guide.
//!
//! The expected values in `known_answers.json` were computed from the
//! formats as documented, by `infra/kat/known_answers.py` with Python's
//! standard library and `cryptography`, not by medrec. Round-trip tests
//! pass whatever the format is; these fail the moment a canonical string, a
//! label, a byte order or a layout changes, which would orphan stored
//! records, break every audit chain or desynchronise the registry.

use medrec_core::audit::chain::{link, GENESIS};
use medrec_core::crypto::blind::BlindIndex;
use medrec_core::crypto::framed::{document_key, open_frames, Layout, HEADER_LEN};
use medrec_core::crypto::{open, resource_aad, unhex, DataKey};
use medrec_core::cursor::{Cursor, CursorCodec};
use medrec_core::registry::hl7::{parse_ack, parse_rsp, vxu, Parties};
use medrec_core::registry::sign;
use medrec_core::registry::{RegistryDose, VaccinationRecord};
use medrec_core::service::ServiceKeys;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("known_answers.json")).expect("vectors are JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    unhex(v.as_str().expect("hex string")).expect("hex")
}

fn key(v: &Value) -> DataKey {
    DataKey::from_slice(&bytes(v)).expect("32-byte key")
}

fn text(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn service_keys_derive_from_the_root_by_their_labels() {
    let v = vectors();
    let keys = ServiceKeys::derive(&key(&v["root"]));
    assert_eq!(keys.blind_index.expose().to_vec(), bytes(&v["derived"]["medrec/blind-index/v1"]));
    assert_eq!(keys.cursor.expose().to_vec(), bytes(&v["derived"]["medrec/cursor/v1"]));
    assert_eq!(keys.audit_chain.expose().to_vec(), bytes(&v["derived"]["medrec/audit-chain/v1"]));
}

#[test]
fn blind_index_tokens_match_the_documented_construction() {
    let v = vectors();
    let index = BlindIndex::new(ServiceKeys::derive(&key(&v["root"])).blind_index);
    let cases = v["blindIndex"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        assert_eq!(
            index.token(text(&c["type"]), text(&c["param"]), text(&c["value"])),
            text(&c["token"]),
            "{}.{}",
            c["type"],
            c["param"]
        );
    }
}

#[test]
fn audit_chain_links_match_the_documented_mac() {
    let v = vectors();
    let chain_key = ServiceKeys::derive(&key(&v["root"])).audit_chain;
    let records = v["auditChain"].as_array().unwrap();
    assert_eq!(records[0]["prev"], GENESIS);
    for r in records {
        let (shard, seq) = (r["shard"].as_u64().unwrap() as u32, r["seq"].as_u64().unwrap());
        assert_eq!(link(&chain_key, shard, seq, text(&r["prev"]), text(&r["body"])), text(&r["link"]), "seq {seq}");
    }
}

#[test]
fn registry_signatures_match_the_agreed_canonical_string() {
    let r = &vectors()["registrySignature"];
    let (k, method, path) = (text(&r["key"]).as_bytes(), text(&r["method"]), text(&r["path"]));
    let (ts, nonce, body) = (text(&r["timestamp"]), text(&r["nonce"]), text(&r["body"]).as_bytes());
    assert_eq!(sign::sign(k, method, path, ts, nonce, body), text(&r["signature"]));
    let now = ts.parse().unwrap();
    assert!(sign::verify(k, (method, path, ts, nonce, body), text(&r["signature"]), now));
}

#[test]
fn a_record_sealed_to_the_documented_envelope_opens() {
    let e = &vectors()["recordEnvelope"];
    let aad = resource_aad(text(&e["patient"]), text(&e["type"]), text(&e["id"]), e["version"].as_u64().unwrap());
    assert_eq!(aad, text(&e["aad"]).as_bytes());
    let data_key = key(&e["key"]);
    let sealed = bytes(&e["sealed"]);
    assert_eq!(open(&data_key, &aad, &sealed).unwrap().as_slice(), text(&e["plaintext"]).as_bytes());
    // medrec's own output has the same layout: version, nonce, ciphertext, tag.
    let own = medrec_core::crypto::seal(&data_key, &aad, text(&e["plaintext"]).as_bytes());
    assert_eq!((own[0], own.len()), (sealed[0], sealed.len()));
    let other_version = resource_aad(text(&e["patient"]), text(&e["type"]), text(&e["id"]), 4);
    assert!(open(&data_key, &other_version, &sealed).is_err());
}

#[test]
fn a_cursor_sealed_to_the_documented_format_decodes() {
    let v = vectors();
    let c = &v["cursor"];
    let codec = CursorCodec::new(ServiceKeys::derive(&key(&v["root"])).cursor);
    let expected: Cursor = serde_json::from_str(text(&c["json"])).unwrap();
    let decoded = codec.decode(text(&c["token"]), text(&c["subject"]), text(&c["route"]), 1_800_000_000).unwrap();
    assert_eq!(decoded, expected);
    assert!(codec.decode(text(&c["token"]), "dr-2", text(&c["route"]), 1_800_000_000).is_err());
}

#[test]
fn a_document_sealed_to_the_documented_frames_opens_whole_and_by_frame() {
    let d = &vectors()["document"];
    let object = text(&d["object"]);
    let doc_key = document_key(&key(&d["patientKey"]), object);
    assert_eq!(doc_key.expose().to_vec(), bytes(&d["documentKey"]));
    let (sealed, plain) = (bytes(&d["sealed"]), bytes(&d["plaintext"]));
    let layout = Layout::parse(&sealed).unwrap();
    assert_eq!((layout.frame_size, layout.len, layout.frames()), (1024, 2500, 3));
    assert_eq!(layout.sealed_len(), sealed.len() as u64);
    let whole = open_frames(&doc_key, object, layout, 0..=2, &sealed[HEADER_LEN..]).unwrap();
    assert_eq!(whole, plain);
    let (frames, (from, to)) = layout.frames_for(1500, 1600);
    assert_eq!(frames, 1..=1);
    let middle = open_frames(&doc_key, object, layout, frames, &sealed[from as usize..=to as usize]).unwrap();
    assert_eq!(middle, plain[1024..2048]);
    assert!(open_frames(&doc_key, "p1/b8", layout, 0..=2, &sealed[HEADER_LEN..]).is_err());
}

// HL7 v2.5.1 messages written by hand from the segment definitions of CDC's
// Implementation Guide for Immunization Messaging (release 1.5): field by
// field, never produced by medrec's builders or its registry simulator.

#[test]
fn a_vxu_has_every_field_where_the_cdc_guide_puts_it() {
    let parties = Parties {
        sending_application: "MEDREC".into(),
        sending_facility: "Smith & Sons|Clinic".into(),
        receiving_application: "IRIS".into(),
        receiving_facility: "IRIS".into(),
    };
    let record = VaccinationRecord {
        patient_id: "p-1".into(),
        family: "O'Brien".into(),
        given: vec!["Zoë".into(), "Ann".into()],
        birth_date: "19870402".into(),
        sex: "F".into(),
        immunization_id: "imm-1".into(),
        cvx: "208".into(),
        cvx_display: "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose".into(),
        occurrence: "20261201".into(),
        lot: Some("EW0182".into()),
        expiration: Some("20270301".into()),
        dose_ml: Some(0.3),
        primary_source: true,
        completion: "CP",
        deleted: false,
    };
    let expected = [
        // MSH-1 |, MSH-2 ^~\&, MSH-3..6 parties (& as \T\, | as \F\), MSH-7
        // time, MSH-9 type, MSH-10 control id, MSH-11 P, MSH-12 2.5.1,
        // MSH-15 ER, MSH-16 AL, MSH-21 profile Z22, MSH-22 sending organization.
        "MSH|^~\\&|MEDREC|Smith \\T\\ Sons\\F\\Clinic|IRIS|IRIS|20261206031500||VXU^V04^VXU_V04|ctl-1|P|2.5.1|||ER|AL|||||Z22^CDCPHINVS|Smith \\T\\ Sons\\F\\Clinic",
        // PID-1 set id, PID-3 identifier (type MR), PID-5 legal name, PID-7 birth, PID-8 sex.
        "PID|1||p-1^^^MEDREC^MR||O'Brien^Zoë^Ann^^^^L||19870402|F",
        // ORC-1 RE, ORC-3 filler order number.
        "ORC|RE||imm-1^MEDREC",
        // RXA-1 0, RXA-2 1, RXA-3 start, RXA-5 CVX, RXA-6/7 amount in UCUM,
        // RXA-9 NIP001 00 (new record), RXA-15 lot, RXA-16 expiry,
        // RXA-20 completion, RXA-21 action A (add).
        "RXA|0|1|20261201||208^COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose^CVX|0.3|mL^milliliters^UCUM||00^New immunization record^NIP001||||||EW0182|20270301||||CP|A",
    ]
    .join("\r");
    assert_eq!(vxu(&parties, &record, "ctl-1", "20261206031500"), expected);
}

#[test]
fn an_ack_and_an_rsp_as_the_guide_shows_them_are_read() {
    let ack = [
        "MSH|^~\\&|IRIS|IRIS|MEDREC|MEDREC|20261206031501||ACK^V04^ACK|ack-9|P|2.5.1|||NE|NE|||||Z23^CDCPHINVS",
        "MSA|AE|ctl-1",
        "ERR||RXA^1^5^1^1|103^Table value not found^HL70357|E|5^Table value not found^HL70533|||Vaccine code not recognized",
    ]
    .join("\r");
    let parsed = parse_ack(&ack).unwrap();
    assert_eq!((parsed.code.as_str(), parsed.acknowledges.as_str()), ("AE", "ctl-1"));
    assert_eq!(parsed.errors, ["103 Table value not found"]);

    let rsp = [
        "MSH|^~\\&|IRIS|IRIS|MEDREC|MEDREC|20261206031502||RSP^K11^RSP_K11|rsp-2|P|2.5.1|||NE|NE|||||Z32^CDCPHINVS",
        "MSA|AA|q-7",
        "QAK|q-7|OK|Z34^Request Immunization History^CDCPHINVS",
        "QPD|Z34^Request Immunization History^CDCPHINVS|q-7|p-1^^^MEDREC^MR",
        "PID|1||IRIS-77^^^IRIS^SR||O'Brien^Zoë^^^^^L||19870402|F",
        "ORC|RE||9001^IRIS",
        "RXA|0|1|20250115||03^MMR^CVX|999|||01^Historical information - source unspecified^NIP001||||||L123|||||CP",
        "ORC|RE||9002^IRIS",
        "RXA|0|1|20251010||141^Influenza, seasonal, injectable^CVX|0.5|mL^milliliters^UCUM||01^Historical information - source unspecified^NIP001|||||||||||RE",
    ]
    .join("\r");
    let result = parse_rsp(&rsp).unwrap();
    assert_eq!((result.acknowledges.as_str(), result.status.as_str()), ("q-7", "OK"));
    let dose = |id: &str, date: &str, cvx: &str, lot: Option<&str>, completion: &str| RegistryDose {
        registry_id: id.into(),
        date: date.into(),
        cvx: cvx.into(),
        lot: lot.map(Into::into),
        completion: completion.into(),
    };
    assert_eq!(
        result.doses,
        [dose("9001", "20250115", "03", Some("L123"), "CP"), dose("9002", "20251010", "141", None, "RE")]
    );
}
