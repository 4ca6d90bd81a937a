//! Which audit chain shard an append goes to, and the heads this process
//! last wrote to each.
//!
//! An append races every other writer of its shard's head; the loser reads
//! the head again and moves. A Lambda instance serves one request at a time,
//! so one preferred shard per instance keeps instances apart. A process that
//! serves requests concurrently (the local stack, a batch's entries) would
//! send them all to that one shard, where all but one lose every round: each
//! append in flight therefore leases a shard no other append of this process
//! holds.

use crate::audit::chain::Head;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub struct Shards {
    count: u32,
    preferred: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    heads: HashMap<u32, Head>,
    leased: HashSet<u32>,
}

/// A shard held by one append until it is dropped.
pub struct Lease<'a> {
    shards: &'a Shards,
    pub shard: u32,
}

fn random_below(n: u32) -> u32 {
    let mut r = [0u8; 4];
    aws_lc_rs::rand::fill(&mut r).expect("system RNG");
    u32::from_le_bytes(r) % n.max(1)
}

impl Shards {
    pub fn new(count: u32) -> Self {
        let count = count.max(1);
        Shards { count, preferred: random_below(count), state: Mutex::default() }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("shards lock")
    }

    /// The preferred shard if free, else a free one from a random start,
    /// else (all leased) any but `avoid`, the shard just lost.
    pub fn lease(&self, avoid: Option<u32>) -> Lease<'_> {
        let mut state = self.state();
        let start = if avoid.is_none() { self.preferred } else { random_below(self.count) };
        let free =
            (0..self.count).map(|i| (start + i) % self.count).find(|s| Some(*s) != avoid && !state.leased.contains(s));
        let shard = free.unwrap_or_else(|| match avoid {
            Some(a) if self.count > 1 => (a + 1 + random_below(self.count - 1)) % self.count,
            _ => random_below(self.count),
        });
        state.leased.insert(shard);
        Lease { shards: self, shard }
    }
}

impl Lease<'_> {
    /// The head this process last wrote to the shard, if it still trusts it.
    pub fn cached_head(&self) -> Option<Head> {
        self.shards.state().heads.get(&self.shard).cloned()
    }

    pub fn advanced(&self, head: Head) {
        self.shards.state().heads.insert(self.shard, head);
    }

    /// Another writer moved the head: the cached one is stale.
    pub fn lost(&self) {
        self.shards.state().heads.remove(&self.shard);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.shards.state().leased.remove(&self.shard);
    }
}

/// A random pause before attempt `attempt` (from 0) of a contended append:
/// none for the first two, then up to 10 ms doubling to at most 320 ms, so
/// writers that keep meeting on a head spread out in time as well as over
/// shards.
pub fn backoff(attempt: u32) -> Duration {
    if attempt < 2 {
        return Duration::ZERO;
    }
    let ceiling = 10u32 << (attempt - 2).min(5);
    Duration::from_millis(u64::from(random_below(ceiling)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_in_flight_get_shards_of_their_own_while_any_is_free() {
        let shards = Shards::new(4);
        let leases: Vec<_> = (0..4).map(|_| shards.lease(None)).collect();
        let distinct: HashSet<u32> = leases.iter().map(|l| l.shard).collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(leases[0].shard, shards.preferred);
        drop(leases);
        assert_eq!(shards.lease(None).shard, shards.preferred, "a dropped lease frees its shard");
    }

    #[test]
    fn a_lost_shard_is_left_even_when_every_shard_is_leased() {
        let shards = Shards::new(3);
        let _all: Vec<_> = (0..3).map(|_| shards.lease(None)).collect();
        for lost in 0..3 {
            for _ in 0..50 {
                assert_ne!(shards.lease(Some(lost)).shard, lost);
            }
        }
        let one = Shards::new(1);
        assert_eq!(one.lease(Some(0)).shard, 0, "a single shard is the only choice");
    }

    #[test]
    fn a_lost_head_is_forgotten() {
        let shards = Shards::new(2);
        let lease = shards.lease(None);
        lease.advanced(Head { seq: 3, hash: "h".into() });
        assert_eq!(lease.cached_head().map(|h| h.seq), Some(3));
        lease.lost();
        assert!(lease.cached_head().is_none());
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        for attempt in 2..20 {
            assert!(backoff(attempt) < Duration::from_millis(320));
        }
    }
}
