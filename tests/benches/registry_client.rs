//! The registry client's overhead per call, against the simulator over
//! loopback: whole submissions per second (token cached, request signed,
//! response signature checked, acknowledgement parsed), and the client's own
//! CPU work per call (building the VXU, signing, verifying, parsing) measured
//! alone, side by side. Run with `cargo bench -p medrec-e2e --bench registry_client`.

use medrec_e2e::sample_vaccination;
use medrec_edge::registry::client::{ClientConfig, Credentials, RegistryClient, Transport};
use medrec_edge::registry::hl7::{self, Parties};
use medrec_edge::registry::sign;
use medrec_infra::registry_sim::RegistrySimulator;
use std::time::Instant;

const CALLS: u32 = 2_000;

#[tokio::main]
async fn main() {
    let creds = Credentials { client_id: "medrec".into(), client_secret: "bench".into(), signing_key: vec![7; 32] };
    let parties = Parties {
        sending_application: "MEDREC".into(),
        sending_facility: "MEDREC".into(),
        receiving_application: "IRIS".into(),
        receiving_facility: "IRIS".into(),
    };
    let sim = RegistrySimulator::start(creds.clone(), 3600).await.unwrap();
    for transport in [Transport::Hl7v2, Transport::Fhir] {
        let mut cfg = ClientConfig::new(vec![sim.base_url.clone()], transport, parties.clone());
        cfg.allow_plain_http = true;
        cfg.rate_per_second = 1_000_000.0;
        cfg.burst = 1_000_000;
        let client = RegistryClient::new(cfg, creds.clone()).unwrap();
        let offset = if transport == Transport::Hl7v2 { 0 } else { CALLS };
        let started = Instant::now();
        for n in 0..CALLS {
            client.submit(&sample_vaccination(offset + n), &format!("m{}", offset + n)).await.unwrap();
        }
        let per_call = started.elapsed().as_secs_f64() / f64::from(CALLS);
        println!("{transport:?}: {:.0} submissions/s, {:.0} µs per call over loopback", 1.0 / per_call, per_call * 1e6);
    }
    // The client's own work per HL7 call, alone.
    let started = Instant::now();
    for n in 0..CALLS {
        let body = hl7::vxu(&parties, &sample_vaccination(n), "m", "20261123000000+0000");
        let s = sign::sign(&creds.signing_key, "POST", "/hl7", "1800000000", "nonce", body.as_bytes());
        let ack = hl7::ack(&parties, "m", "AA", None, "a", "20261123000000+0000");
        let ok = sign::verify(
            &creds.signing_key,
            ("POST", "/hl7", "1800000000", "nonce", body.as_bytes()),
            &s,
            1_800_000_000,
        );
        assert!(ok && hl7::parse_ack(&ack).is_ok());
    }
    let own = started.elapsed().as_secs_f64() / f64::from(CALLS);
    println!("client-side work per HL7 call (build, sign, verify, parse; the ack built too): {:.1} µs", own * 1e6);
}
