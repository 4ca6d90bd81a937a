//! The audit mirror: every chain record, as the table's stream saw it
//! committed, copied by a function whose role alone writes the Object Lock
//! archive. An API function's role can put items in the audit table (it
//! appends its records in the same transaction as its writes) and holds
//! the chain's MAC key, so it could rewrite a record and relink the chain
//! after it undetectably until the next signed checkpoint. It cannot touch
//! the stream DynamoDB itself writes, nor the locked archive: a record
//! that differs from its mirrored hash, or is gone, or was changed or
//! removed at all (the stream shows that too), names the tampering.

use super::chain::Record;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One line of a mirror object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MirrorEntry {
    /// A chain record as committed.
    Committed { shard: u32, seq: u64, hash: String, id: String },
    /// A chain record changed (`MODIFY`) or removed (`REMOVE`) after commit.
    Changed { shard: u32, seq: u64, event: String, before: String, after: Option<String> },
}

/// What comparing the table with the mirror found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorReport {
    /// Chain records the mirror holds and the table agrees with.
    pub matched: usize,
    /// Chain records in the table the mirror has not seen (yet: the stream
    /// is seconds behind; an outage longer than the stream's 24 hours
    /// would show here for good).
    pub unmirrored: usize,
    /// The first record (by shard, then sequence) tampered with after commit.
    pub finding: Option<MirrorFinding>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFinding {
    pub shard: u32,
    pub seq: u64,
    pub what: &'static str,
}

/// Compares the table's chains with the mirror.
pub fn compare(records: &HashMap<u32, Vec<Record>>, mirror: &[MirrorEntry]) -> MirrorReport {
    let mut committed: BTreeMap<(u32, u64), &str> = BTreeMap::new();
    let mut findings: BTreeMap<(u32, u64), &'static str> = BTreeMap::new();
    for entry in mirror {
        match entry {
            MirrorEntry::Committed { shard, seq, hash, .. } => {
                committed.entry((*shard, *seq)).or_insert(hash);
            }
            MirrorEntry::Changed { shard, seq, event, .. } => {
                let what = if event == "REMOVE" { "removed after commit" } else { "changed after commit" };
                findings.entry((*shard, *seq)).or_insert(what);
            }
        }
    }
    let table: BTreeMap<(u32, u64), &str> =
        records.iter().flat_map(|(shard, recs)| recs.iter().map(move |r| ((*shard, r.seq), r.hash.as_str()))).collect();
    let mut report = MirrorReport::default();
    for (key, hash) in &committed {
        match table.get(key) {
            None => {
                findings.entry(*key).or_insert("missing from the table");
            }
            Some(h) if h != hash => {
                findings.entry(*key).or_insert("differs from what was committed");
            }
            Some(_) => report.matched += 1,
        }
    }
    report.unmirrored = table.keys().filter(|k| !committed.contains_key(k)).count();
    report.finding = findings.into_iter().next().map(|((shard, seq), what)| MirrorFinding { shard, seq, what });
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, hash: &str) -> Record {
        Record { seq, prev: String::new(), hash: hash.into(), body: String::new() }
    }

    fn committed(shard: u32, seq: u64, hash: &str) -> MirrorEntry {
        MirrorEntry::Committed { shard, seq, hash: hash.into(), id: format!("a{seq}") }
    }

    #[test]
    fn every_kind_of_difference_is_named_first_by_position() {
        let table = HashMap::from([(0, vec![rec(1, "h1"), rec(2, "h2"), rec(3, "h3")]), (1, vec![rec(1, "g1")])]);
        let mirror = vec![committed(0, 1, "h1"), committed(0, 2, "h2"), committed(1, 1, "g1")];
        let clean = compare(&table, &mirror);
        assert_eq!((clean.matched, clean.unmirrored, clean.finding), (3, 1, None));
        // Rewritten (relinked, so the chain alone still verifies).
        let rewritten = compare(&HashMap::from([(0, vec![rec(1, "h1"), rec(2, "forged")])]), &mirror[..2]);
        assert_eq!(
            rewritten.finding,
            Some(MirrorFinding { shard: 0, seq: 2, what: "differs from what was committed" })
        );
        // Deleted (the tail cut and the head rolled back).
        let cut = compare(&HashMap::from([(0, vec![rec(1, "h1")])]), &mirror[..2]);
        assert_eq!(cut.finding, Some(MirrorFinding { shard: 0, seq: 2, what: "missing from the table" }));
        // Changed and changed back: the stream saw it.
        let mut seen = mirror.clone();
        seen.push(MirrorEntry::Changed {
            shard: 0,
            seq: 1,
            event: "MODIFY".into(),
            before: "h1".into(),
            after: Some("x".into()),
        });
        assert_eq!(compare(&table, &seen).finding.map(|f| (f.seq, f.what)), Some((1, "changed after commit")));
        // A redelivered batch mirrors the same record twice: one match.
        let mut twice = mirror.clone();
        twice.push(committed(0, 1, "h1"));
        assert_eq!(compare(&table, &twice).matched, 3);
    }

    #[test]
    fn entries_are_one_json_line_each() {
        let line = serde_json::to_string(&committed(3, 7, "abc")).unwrap();
        assert_eq!(line, r#"{"kind":"committed","shard":3,"seq":7,"hash":"abc","id":"a7"}"#);
        assert_eq!(serde_json::from_str::<MirrorEntry>(&line).unwrap(), committed(3, 7, "abc"));
    }
}
