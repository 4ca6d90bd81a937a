//! The registry client against the registry simulator over loopback HTTP:
//! each fault mode handled as specified, the breaker opening and
//! recovering, failover, and no immunization recorded twice.

use medrec_e2e::sample_vaccination;
use medrec_edge::registry::client::{ClientConfig, Credentials, RegistryClient, RegistryError, Submitted, Transport};
use medrec_edge::registry::hl7::Parties;
use medrec_edge::registry::resilience::{Backoff, BreakerState};
use medrec_edge::registry::RegistryDose;
use medrec_infra::registry_sim::{Fault, RegistrySimulator};
use std::sync::Arc;
use std::time::Duration;

fn creds() -> Credentials {
    Credentials { client_id: "medrec".into(), client_secret: "s3cret-for-tests".into(), signing_key: b"k".repeat(32) }
}

fn config(endpoints: Vec<String>, transport: Transport) -> ClientConfig {
    let parties = Parties {
        sending_application: "MEDREC".into(),
        sending_facility: "MEDREC".into(),
        receiving_application: "IRIS".into(),
        receiving_facility: "IRIS".into(),
    };
    let mut c = ClientConfig::new(endpoints, transport, parties);
    c.allow_plain_http = true;
    c.attempt_timeout = Duration::from_millis(500);
    c.attempts = 3;
    c.backoff = Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
    };
    c.breaker_threshold = 3;
    c.breaker_open_for = Duration::from_millis(400);
    c
}

async fn pair() -> (Arc<RegistrySimulator>, Arc<RegistrySimulator>) {
    (RegistrySimulator::start(creds(), 3600).await.unwrap(), RegistrySimulator::start(creds(), 3600).await.unwrap())
}

#[tokio::test]
async fn submissions_over_both_transports_are_recorded_once() {
    for transport in [Transport::Hl7v2, Transport::Fhir] {
        let (sim, _) = pair().await;
        let client = RegistryClient::new(config(vec![sim.base_url.clone()], transport), creds()).unwrap();
        assert_eq!(client.submit(&sample_vaccination(1), "m1").await, Ok(Submitted::Accepted));
        assert_eq!(client.submit(&sample_vaccination(1), "m1").await, Ok(Submitted::AlreadyKnown), "{transport:?}");
        assert_eq!(client.submit(&sample_vaccination(2), "m2").await, Ok(Submitted::Accepted));
        let stats = sim.stats();
        assert_eq!(
            (stats.recorded, stats.duplicates, stats.tokens_issued),
            (2, 1, 1),
            "{transport:?}: one token reused"
        );
        assert_eq!(sim.doses_of("p1").len(), 2);
    }
}

#[tokio::test]
async fn each_fault_mode_is_handled_as_specified() {
    let (sim, _) = pair().await;
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), creds()).unwrap();
    let cases: Vec<(Fault, usize)> = vec![
        (Fault::Latency(Duration::from_millis(800)), 1),
        (Fault::Status(500, None), 2),
        (Fault::Status(503, Some(1)), 1),
        (Fault::Status(429, Some(1)), 1),
        (Fault::Drop, 2),
        (Fault::ExpiredToken, 1),
        (Fault::BadSignature, 1),
        (Fault::StaleAck, 1),
    ];
    for (i, (fault, times)) in cases.into_iter().enumerate() {
        let n = i as u32 + 1;
        let before = sim.stats();
        sim.inject(fault.clone(), times);
        let started = std::time::Instant::now();
        let outcome = client.submit(&sample_vaccination(n), &format!("m{n}")).await;
        // A forged or stale answer may come after the registry recorded the
        // dose: the retry then meets the registry's duplicate check.
        assert!(matches!(outcome, Ok(Submitted::Accepted | Submitted::AlreadyKnown)), "{fault:?}: {outcome:?}");
        let after = sim.stats();
        assert_eq!(after.recorded - before.recorded, 1, "{fault:?}: recorded exactly once");
        if let Fault::Status(_, Some(secs)) = fault {
            assert!(started.elapsed() >= Duration::from_secs(secs), "{fault:?}: Retry-After honoured");
        }
        if fault == Fault::ExpiredToken {
            assert_eq!(after.tokens_issued - before.tokens_issued, 1, "a new token after the expired one");
        }
    }
    assert_eq!(sim.stats().refused_signatures, 0, "every request was signed correctly");
    assert_eq!(sim.doses_of("p1").len(), 8);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers_through_a_probe() {
    let (sim, _) = pair().await;
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), creds()).unwrap();
    client.submit(&sample_vaccination(1), "warm").await.unwrap();
    sim.inject(Fault::Status(500, None), 100);
    let err = client.submit(&sample_vaccination(2), "m2").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err:?}");
    assert_eq!(client.breakers(), vec![("primary", BreakerState::Open)]);
    let seen = sim.stats().requests;
    assert!(matches!(client.submit(&sample_vaccination(2), "m2").await, Err(RegistryError::Unavailable(_))));
    assert_eq!(sim.stats().requests, seen, "open: no request leaves");
    sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(client.breakers(), vec![("primary", BreakerState::HalfOpen)]);
    assert_eq!(client.submit(&sample_vaccination(2), "m2").await, Ok(Submitted::Accepted));
    assert_eq!(client.breakers(), vec![("primary", BreakerState::Closed)]);
}

#[tokio::test]
async fn a_failing_primary_fails_over_to_the_secondary() {
    let (primary, secondary) = pair().await;
    let endpoints = vec![primary.base_url.clone(), secondary.base_url.clone()];
    let client = RegistryClient::new(config(endpoints, Transport::Fhir), creds()).unwrap();
    primary.inject(Fault::Drop, 100);
    assert_eq!(client.submit(&sample_vaccination(1), "m1").await, Ok(Submitted::Accepted));
    assert_eq!((primary.stats().recorded, secondary.stats().recorded), (0, 1));
    assert_eq!(client.breakers()[0], ("primary", BreakerState::Open));
    // While the primary's breaker is open, calls go straight to the secondary.
    assert_eq!(client.submit(&sample_vaccination(2), "m2").await, Ok(Submitted::Accepted));
    assert_eq!(secondary.stats().recorded, 2);
}

#[tokio::test]
async fn refusals_are_final_and_name_no_secret() {
    let (sim, _) = pair().await;
    let mut wrong = creds();
    wrong.client_secret = "guessed".into();
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), wrong).unwrap();
    let err = client.submit(&sample_vaccination(1), "m1").await.unwrap_err();
    assert_eq!(err, RegistryError::Unauthorized);
    assert!(!format!("{err:?} {err}").contains("guessed"));
    assert!(!format!("{:?}", creds()).contains("s3cret"), "credentials' Debug is redacted");
    // A wrong signing key: the registry refuses the signature.
    let mut badkey = creds();
    badkey.signing_key = b"x".repeat(32);
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), badkey).unwrap();
    assert_eq!(client.submit(&sample_vaccination(1), "m1").await.unwrap_err(), RegistryError::Unauthorized);
    assert!(sim.stats().refused_signatures >= 1);
    assert_eq!(sim.stats().recorded, 0);
    // Content the registry refuses is rejected, not retried.
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), creds()).unwrap();
    let mut bad = sample_vaccination(3);
    bad.cvx = String::new();
    assert!(matches!(client.submit(&bad, "m3").await, Err(RegistryError::Rejected(_))));
    // Plain HTTP is refused beyond loopback.
    let cfg = config(vec!["http://registry.example.org".into()], Transport::Hl7v2);
    assert!(matches!(RegistryClient::new(cfg, creds()), Err(RegistryError::Config(_))));
}

#[tokio::test]
async fn the_history_query_returns_what_the_registry_holds() {
    let (sim, _) = pair().await;
    let client = RegistryClient::new(config(vec![sim.base_url.clone()], Transport::Hl7v2), creds()).unwrap();
    assert_eq!(client.history(&sample_vaccination(0), "q1").await, Ok(vec![]));
    let seeded = RegistryDose {
        registry_id: "IRIS-X".into(),
        date: "20250110".into(),
        cvx: "141".into(),
        lot: None,
        completion: "CP".into(),
    };
    sim.seed("p1", seeded.clone());
    client.submit(&sample_vaccination(1), "m1").await.unwrap();
    let doses = client.history(&sample_vaccination(0), "q2").await.unwrap();
    assert_eq!(doses.len(), 2);
    assert!(doses.contains(&seeded));
}
