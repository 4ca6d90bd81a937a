//! The registry client's defences, as plain state machines with the clock
//! passed in (so they are tested without sleeping): a circuit breaker per
//! endpoint, exponential backoff with full jitter that honours
//! `Retry-After`, and a token-bucket rate limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is let through; its outcome closes or reopens the breaker.
    HalfOpen {
        probing: bool,
    },
}

/// Opens after `threshold` consecutive failures, stays open for `open_for`,
/// then lets one probe through.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    threshold: u32,
    open_for: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker { inner: Mutex::new(Inner::Closed { failures: 0 }), threshold: threshold.max(1), open_for }
    }

    /// Whether a call may go out now (a half-open breaker admits one).
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.inner.lock().expect("breaker lock");
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::Open { .. } => false,
            Inner::HalfOpen { probing: true } => false,
            Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
        }
    }

    pub fn success(&self) {
        *self.inner.lock().expect("breaker lock") = Inner::Closed { failures: 0 };
    }

    pub fn failure(&self, now: Instant) {
        let mut inner = self.inner.lock().expect("breaker lock");
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed { failures: failures + 1 },
            _ => Inner::Open { until: now + self.open_for },
        };
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.inner.lock().expect("breaker lock") {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Exponential backoff with full jitter (a random delay up to
/// `base * 2^attempt`, capped), or the server's `Retry-After` when it asks
/// for longer (up to `max_retry_after`: a registry cannot park a Lambda).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub max_retry_after: Duration,
}

impl Backoff {
    /// `unit` is a uniform random number in [0, 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(asked) => asked.min(self.max_retry_after).max(jittered),
            None => jittered,
        }
    }
}

/// Token bucket: `rate` calls per second on average, bursts of `burst`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate_per_second: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit { rate: rate_per_second.max(0.001), burst, state: Mutex::new((burst, now)) }
    }

    /// Takes a token if one is there (`None`), or says how long until one is.
    pub fn try_take(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().expect("rate lock");
        let (tokens, last) = *state;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            None
        } else {
            *state = (tokens, now);
            Some(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// A uniform random number in [0, 1) from the system RNG.
pub fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG");
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_probes_once_and_recovers() {
        let t0 = Instant::now();
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)), "fails fast while open");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one");
        b.failure(later);
        assert_eq!(b.state(later), BreakerState::Open, "a failed probe reopens");
        let again = later + Duration::from_secs(10);
        assert!(b.allow(again));
        b.success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.allow(again) && b.allow(again));
    }

    #[test]
    fn backoff_is_jittered_capped_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        };
        assert_eq!(b.delay(0, None, 0.0), Duration::ZERO);
        assert_eq!(b.delay(0, None, 0.5), Duration::from_millis(50));
        assert_eq!(b.delay(3, None, 0.999_999).as_millis(), 799);
        assert_eq!(b.delay(30, None, 0.999_999).as_millis(), 1999, "capped");
        assert_eq!(b.delay(0, Some(Duration::from_secs(3)), 0.1), Duration::from_secs(3));
        assert_eq!(b.delay(0, Some(Duration::from_secs(60)), 0.1), Duration::from_secs(5), "bounded");
        for _ in 0..100 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn rate_limit_allows_bursts_then_paces() {
        let t0 = Instant::now();
        let r = RateLimit::new(10.0, 2, t0);
        assert_eq!(r.try_take(t0), None);
        assert_eq!(r.try_take(t0), None);
        let wait = r.try_take(t0).expect("bucket empty");
        assert!(wait <= Duration::from_millis(100) && wait >= Duration::from_millis(99));
        assert_eq!(r.try_take(t0 + Duration::from_millis(100)), None);
        assert!(r.try_take(t0 + Duration::from_millis(100)).is_some());
        assert_eq!(r.try_take(t0 + Duration::from_secs(60)), None, "refilled, to the burst only");
        assert_eq!(r.try_take(t0 + Duration::from_secs(60)), None);
        assert!(r.try_take(t0 + Duration::from_secs(60)).is_some());
    }
}
