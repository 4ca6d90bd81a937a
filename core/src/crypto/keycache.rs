//! In-memory cache of unwrapped patient data keys, bounded by age, uses,
//! bytes protected and entries, so a warm read makes no KMS call while a stolen memory image or a
//! long-lived container exposes as few keys for as short a time as possible.

use super::DataKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_age: Duration,
    pub max_uses: u64,
    /// Bytes a cached key may seal and open before it is retired.
    pub max_bytes: u64,
    pub max_entries: usize,
}

struct Entry {
    key: Arc<DataKey>,
    loaded: Instant,
    uses: u64,
}

pub struct KeyCache {
    limits: Limits,
    entries: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    pub fn new(limits: Limits) -> Self {
        KeyCache { limits, entries: Mutex::new(HashMap::new()) }
    }

    /// Returns the patient's key if it is cached and within its limits; a key
    /// past a limit is evicted (and zeroised once no request holds it).
    pub fn get(&self, patient: &str) -> Option<Arc<DataKey>> {
        let mut entries = self.entries.lock().expect("key cache lock");
        let entry = entries.get_mut(patient)?;
        if entry.loaded.elapsed() >= self.limits.max_age
            || entry.uses >= self.limits.max_uses
            || entry.key.bytes_processed() >= self.limits.max_bytes
        {
            entries.remove(patient);
            return None;
        }
        entry.uses += 1;
        Some(entry.key.clone())
    }

    pub fn insert(&self, patient: &str, key: Arc<DataKey>) {
        let mut entries = self.entries.lock().expect("key cache lock");
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.loaded) < self.limits.max_age);
        if entries.len() >= self.limits.max_entries {
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.loaded).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(patient.to_owned(), Entry { key, loaded: now, uses: 1 });
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("key cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_age_ms: u64, max_uses: u64, max_entries: usize) -> KeyCache {
        KeyCache::new(Limits { max_age: Duration::from_millis(max_age_ms), max_uses, max_bytes: u64::MAX, max_entries })
    }

    #[test]
    fn byte_limit_is_honoured() {
        let c =
            KeyCache::new(Limits { max_age: Duration::from_secs(60), max_uses: 100, max_bytes: 100, max_entries: 10 });
        c.insert("p1", Arc::new(DataKey::random()));
        let k = c.get("p1").unwrap();
        super::super::seal(&k, b"", &[0u8; 99]);
        assert!(c.get("p1").is_some(), "99 of 100 bytes used");
        super::super::seal(&k, b"", &[0u8; 1]);
        assert!(c.get("p1").is_none(), "the 100th byte retires the key");
    }

    #[test]
    fn use_limit_is_honoured() {
        let c = cache(60_000, 3, 10);
        c.insert("p1", Arc::new(DataKey::random()));
        assert!(c.get("p1").is_some());
        assert!(c.get("p1").is_some());
        assert!(c.get("p1").is_none(), "third use would exceed max_uses=3 counting the insert");
        assert!(c.get("p1").is_none());
    }

    #[test]
    fn age_limit_is_honoured() {
        let c = cache(20, 100, 10);
        c.insert("p1", Arc::new(DataKey::random()));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get("p1").is_none());
    }

    #[test]
    fn entry_limit_evicts_oldest_and_never_crosses_patients() {
        let c = cache(60_000, 100, 2);
        let k1 = Arc::new(DataKey::random());
        c.insert("p1", k1.clone());
        std::thread::sleep(Duration::from_millis(2));
        c.insert("p2", Arc::new(DataKey::random()));
        std::thread::sleep(Duration::from_millis(2));
        c.insert("p3", Arc::new(DataKey::random()));
        assert_eq!(c.len(), 2);
        assert!(c.get("p1").is_none());
        assert!(c.get("p4").is_none());
        let k2 = c.get("p2").unwrap();
        assert_ne!(k2.expose(), k1.expose());
    }
}
