//! Transactions larger than one `TransactWriteItems` (decision 0011): a
//! journal and a commit marker.
//!
//! - Header `TX` / `<id>`: `state` pending → committed or aborted (final),
//!   `deadline` (epoch milliseconds), and `done` once nothing of the
//!   journal is left to do.
//! - Journal `TX#<id>`: `K#n` pages list the keys of the items prepared
//!   (and of the index entries to drop); `R#n` pages hold the audit
//!   records and outbox events to append once committed; `D#n` marks page
//!   `R#n` done.
//!
//! Prepare writes every change's items, each chunk in one transaction with
//! the page listing it: new items (a create's, an update's new version and
//! index entries) carry `tx = <id>` and stay invisible while the header is
//! not committed; a changed record's current item keeps the old item and
//! holds the new one in `pend` (conditional on the version read and on no
//! other transaction holding it; every writer's condition), so readers see
//! the old until the commit and the new after. The commit is one
//! `TransactWriteItems`: the header pending → committed and the Bundle's
//! audit record naming every change, whatever the transaction's size.
//! Rolling forward appends the entries' audit records and events (each
//! page once: its marker commits with it), deletes dropped index entries,
//! puts each held item in place, strips `tx`, and clears the journal;
//! rolling back deletes what prepare created and releases what it held.
//! Whoever finds a journal unfinished (`finish_transactions`) completes it.

use super::{chain_entry, get_s, n, outbox_event, s, DynamoStore, MAX_TRANSACTION_ITEMS};
use crate::audit::AuditEntry;
use crate::error::PortError;
use crate::ports::{DomainEvent, ResourceWrite};
use crate::schema::{
    from_item, journal_page_sk as page_sk, journal_pk, key, to_item, ChainEntry, JournalRecords, OutboxEvent,
    TransactionHeader, TRANSACTION_HEADERS as HEADERS,
};
use aws_sdk_dynamodb::types::{AttributeValue as AV, Delete, Put, TransactWriteItem, Update};
use futures_util::StreamExt;
use std::collections::HashMap;

type Item = HashMap<String, AV>;
/// A held record's key and the item it becomes once committed, as the
/// writer prepared it: its own roll-forward puts it without reading it back.
type Held = HashMap<(String, String), Item>;

fn key_of(item: &Item) -> (String, String) {
    let part = |k| get_s(item, k).unwrap_or_default().to_owned();
    (part("pk"), part("sk"))
}

/// How long a finished header stays (DynamoDB TTL), for readers that met
/// one of its items before it finished.
const FINISHED_TTL_SECONDS: i64 = 86_400;
/// Audit records appended per roll-forward page, with their events, the
/// page's marker and the chain head in one transaction.
const RECORDS_PER_PAGE: usize = 30;
/// Held items released at once when a transaction finishes.
const RELEASES_IN_FLIGHT: usize = 8;
/// Items written per prepare transaction, beside the page listing them.
const ITEMS_PER_PAGE: usize = MAX_TRANSACTION_ITEMS - 1;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Milliseconds, so a deadline is the configured span, not up to a second
/// less or more by rounding.
fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// How the journal lists an item of a transaction (`k` beside its key):
/// a new item (`k` absent), a record's current item holding its
/// replacement, an index entry to delete once committed.
const CREATE: &str = "";
const REPLACE: &str = "pend";
const DROP: &str = "drop";

/// One item of a change as prepare writes it (nothing, for a drop) and the
/// journal lists it.
struct Step {
    key: Item,
    kind: &'static str,
    write: Option<TransactWriteItem>,
    /// What a held record becomes once committed.
    replacement: Option<Item>,
}

impl Step {
    /// The prepared form of an item the plain commit would write.
    fn of(item: TransactWriteItem, id: &str) -> Step {
        if let Some(d) = item.delete() {
            return Step { key: d.key().clone(), kind: DROP, write: None, replacement: None };
        }
        let p = item.put().expect("a change's items are puts and deletes");
        let key: Item = ["pk", "sk"].iter().filter_map(|k| Some((k.to_string(), p.item().get(*k)?.clone()))).collect();
        if p.condition_expression() == Some(super::REPLACES) {
            let pend: Item =
                p.item().iter().filter(|(k, _)| !key.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let update = Update::builder()
                .table_name(p.table_name())
                .set_key(Some(key.clone()))
                .update_expression("SET pend = :pend, tx = :tx")
                .condition_expression(super::REPLACES)
                .set_expression_attribute_values(p.expression_attribute_values().cloned())
                .expression_attribute_values(":pend", AV::M(pend))
                .expression_attribute_values(":tx", s(id))
                .build()
                .expect("table, key and expression set");
            let write = Some(TransactWriteItem::builder().update(update).build());
            return Step { key, kind: REPLACE, write, replacement: Some(p.item().clone()) };
        }
        let mut attrs = p.item().clone();
        attrs.insert("tx".into(), s(id));
        let put = Put::builder()
            .table_name(p.table_name())
            .set_item(Some(attrs))
            .set_condition_expression(p.condition_expression().map(str::to_owned))
            .set_expression_attribute_values(p.expression_attribute_values().cloned())
            .build()
            .expect("table and item set");
        Step { key, kind: CREATE, write: Some(TransactWriteItem::builder().put(put).build()), replacement: None }
    }

    fn listed(&self) -> AV {
        let mut listed = self.key.clone();
        if self.kind != CREATE {
            listed.insert("k".into(), s(self.kind));
        }
        AV::M(listed)
    }
}

/// A release's outcome: its condition failing means the item is released
/// already (a rerun) or gone (purged) since, which is done too.
fn unless_released<T, E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(sent: Result<T, E>) -> Result<(), PortError> {
    match sent {
        Err(e) if e.code() != Some("ConditionalCheckFailedException") => Err(super::port_error("dynamodb", &e)),
        _ => Ok(()),
    }
}

/// The item a record's current item becomes: the one it holds in `pend`.
fn replacement(item: &Item, pend: &Item) -> Item {
    let mut new = pend.clone();
    for k in ["pk", "sk"] {
        if let Some(v) = item.get(k) {
            new.insert(k.to_owned(), v.clone());
        }
    }
    new
}

/// What the reader of an item carrying `tx` makes of its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Committed,
    Aborted,
}

impl DynamoStore {
    /// An item as readers see it. One written by no transaction is itself
    /// (the common case, at no cost); a transaction's creation only once it
    /// committed; a record it changes (`pend` holding the new item) is the
    /// new item once it committed, the old one until then. Final states
    /// are cached (they never change).
    pub(super) async fn resolved(&self, item: Option<&Item>) -> Result<Option<Item>, PortError> {
        let Some(item) = item else { return Ok(None) };
        let Some(id) = get_s(item, "tx") else { return Ok(Some(item.clone())) };
        let cached = self.tx_states.lock().expect("tx states lock").get(id).copied();
        let committed = match cached {
            Some(committed) => committed,
            None => self.header(id).await?.map(|(state, _)| state) == Some(State::Committed),
        };
        Ok(match item.get("pend").and_then(|p| p.as_m().ok()) {
            Some(pend) if committed => Some(replacement(item, pend)),
            Some(_) => {
                let mut old = item.clone();
                old.remove("pend");
                old.remove("tx");
                Some(old)
            }
            None => committed.then(|| item.clone()),
        })
    }

    /// `items` as readers see them (those not yet created left out).
    pub(super) async fn all_resolved(&self, items: Vec<Item>) -> Result<Vec<Item>, PortError> {
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            out.extend(self.resolved(Some(item)).await?);
        }
        Ok(out)
    }

    /// A transaction's state and whether it is done; None when its header
    /// is gone (finished long ago).
    async fn header(&self, id: &str) -> Result<Option<(State, bool)>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(HEADERS, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| super::port_error("dynamodb", &e))?;
        let Some(item) = out.item() else { return Ok(None) };
        let header: TransactionHeader = from_item(item)?;
        let state = match header.state.as_str() {
            "committed" => State::Committed,
            "aborted" => State::Aborted,
            _ => State::Pending,
        };
        if state != State::Pending {
            self.tx_states.lock().expect("tx states lock").insert(id.to_owned(), state == State::Committed);
        }
        Ok(Some((state, header.done)))
    }

    /// Commits `writes` too many for one `TransactWriteItems`; `audits`
    /// ends with the Bundle's own record, which commits with the header.
    pub(super) async fn commit_journaled(
        &self,
        writes: Vec<ResourceWrite>,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> Result<(), PortError> {
        let (bundle, entry_audits) =
            audits.split_last().ok_or_else(|| PortError::Integrity("a transaction without its audit record".into()))?;
        let id = crate::crypto::random_id();
        // The flip: the header, the Bundle's record and its chain head.
        let flip = vec![self.header_transition(&id, "pending", "committed")];
        let records: Vec<ChainEntry> = entry_audits.iter().map(chain_entry).collect();
        let outbox: Vec<OutboxEvent> = events.iter().map(outbox_event).collect();
        let pages = records.len().div_ceil(RECORDS_PER_PAGE).max(1);
        let events_per_page = outbox.len().div_ceil(pages);
        if RECORDS_PER_PAGE + events_per_page + 2 > MAX_TRANSACTION_ITEMS {
            return Err(PortError::TooLarge {
                items: RECORDS_PER_PAGE + events_per_page + 2,
                limit: MAX_TRANSACTION_ITEMS,
            });
        }

        let header = TransactionHeader {
            pk: HEADERS.into(),
            sk: id.clone(),
            state: "pending".into(),
            deadline: (now_millis() + self.transaction_deadline.as_millis() as i64) as u64,
            created: bundle.recorded.clone(),
            done: false,
        };
        self.put_item(to_item(&header), true).await?;
        let mut held = Held::new();
        let committed = async {
            for page in 0..pages {
                let per = events_per_page.max(1);
                let journal = JournalRecords {
                    pk: journal_pk(&id),
                    sk: page_sk('R', page),
                    records: records.iter().skip(page * RECORDS_PER_PAGE).take(RECORDS_PER_PAGE).cloned().collect(),
                    events: outbox.iter().skip(page * per).take(per).cloned().collect(),
                };
                self.put_item(to_item(&journal), false).await?;
            }
            held = self.prepare(&id, &writes).await?;
            self.append_chain(flip, vec![], &[chain_entry(bundle)]).await
        }
        .await;
        match committed {
            Ok(()) => {
                self.tx_states.lock().expect("tx states lock").insert(id.clone(), true);
                if let Err(e) = self.finish(&id, &held).await {
                    // Committed: the sweep finishes what is left.
                    tracing::warn!(error = %e, "transaction committed; its roll-forward is left to the sweep");
                }
                Ok(())
            }
            Err(e) => {
                // A lost answer may hide a commit that happened: the header decides.
                if self.header(&id).await?.map(|(state, _)| state) == Some(State::Committed) {
                    let _ = self.finish(&id, &held).await;
                    return Ok(());
                }
                self.abort(&id).await?;
                if let Err(cleanup) = self.finish(&id, &held).await {
                    tracing::warn!(error = %cleanup, "transaction aborted; its roll-back is left to the sweep");
                }
                Err(e)
            }
        }
    }

    /// Writes every change's items for the transaction, each chunk with
    /// the page listing them, in one `TransactWriteItems`: new items marked
    /// `tx`, a changed record's current item holding the new one in `pend`
    /// (on the version read, which it holds against every other writer
    /// until finished), and index entries to drop listed only. Returns
    /// what each held record becomes.
    async fn prepare(&self, id: &str, writes: &[ResourceWrite]) -> Result<Held, PortError> {
        let steps: Vec<Step> = writes.iter().flat_map(|w| self.resource_items(w)).map(|i| Step::of(i, id)).collect();
        for (page, chunk) in steps.chunks(ITEMS_PER_PAGE).enumerate() {
            let mut listing = key(journal_pk(id), page_sk('K', page));
            listing.insert("keys".into(), AV::L(chunk.iter().map(Step::listed).collect()));
            let mut all = vec![super::put(&self.tables.records, listing, Some("attribute_not_exists(pk)"), &[])];
            all.extend(chunk.iter().filter_map(|step| step.write.clone()));
            self.transact(all).await.map_err(|(e, failed)| match (failed.first(), e) {
                (Some(i), _) => PortError::ConditionFailed(*i),
                // A held item is the old and the new together: beyond
                // DynamoDB's 400 KB for a resource of more than ~190 KB.
                (None, PortError::Backend { detail, .. }) if detail == "ValidationException" => PortError::ItemTooLarge,
                (None, e) => e,
            })?;
        }
        Ok(steps.into_iter().filter_map(|step| Some((key_of(&step.key), step.replacement?))).collect())
    }

    /// The header's move from `from` to `to`, conditional on `from`.
    fn header_transition(&self, id: &str, from: &str, to: &str) -> TransactWriteItem {
        let update = Update::builder()
            .table_name(&self.tables.records)
            .set_key(Some(key(HEADERS, id)))
            .update_expression("SET #s = :to")
            .condition_expression("#s = :from")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":from", s(from))
            .build()
            .expect("table, key and expression set");
        TransactWriteItem::builder().update(update).build()
    }

    /// Moves a pending transaction to aborted; false when it is not pending
    /// (it committed, or was aborted already).
    async fn abort(&self, id: &str) -> Result<bool, PortError> {
        match self.transact(vec![self.header_transition(id, "pending", "aborted")]).await {
            Ok(()) => {
                self.tx_states.lock().expect("tx states lock").insert(id.to_owned(), false);
                Ok(true)
            }
            Err((_, failed)) if !failed.is_empty() => Ok(false),
            Err((e, _)) => Err(e),
        }
    }

    /// Completes a committed or aborted transaction: rolls it forward or
    /// back, clears its journal and marks its header done. Idempotent.
    /// `held`: what the held records become, when the caller prepared them
    /// (the sweep reads each back instead).
    async fn finish(&self, id: &str, held: &Held) -> Result<(), PortError> {
        let Some((state, done)) = self.header(id).await? else { return Ok(()) };
        if done || state == State::Pending {
            return Ok(());
        }
        let journal = self.journal(id).await?;
        let page = |kind: char| journal.iter().filter(move |i| get_s(i, "sk").is_some_and(|sk| sk.starts_with(kind)));
        if state == State::Committed {
            for r in page('R') {
                self.append_page(id, r).await?;
            }
        }
        let listed: Vec<Item> = page('K')
            .flat_map(|k| k.get("keys").and_then(|v| v.as_l().ok()).cloned().unwrap_or_default())
            .filter_map(|k| k.as_m().ok().cloned())
            .collect();
        let of = |kind: &str| -> Vec<Item> {
            listed
                .iter()
                .filter(|k| get_s(k, "k").unwrap_or(CREATE) == kind)
                .map(|k| k.iter().filter(|(a, _)| *a != "k").map(|(a, v)| (a.clone(), v.clone())).collect())
                .collect()
        };
        let committed = state == State::Committed;
        // Index entries of dropped tokens go before the records they
        // belonged to are released: once released, a writer may index the
        // same token again, which a later drop would undo.
        if committed {
            for chunk in of(DROP).chunks(MAX_TRANSACTION_ITEMS) {
                let deletes = chunk.iter().map(|key| self.delete_action(key, None)).collect();
                self.transact(deletes).await.map_err(|(e, _)| e)?;
            }
        }
        // Each release is its own item's write (after a read, when the
        // sweep finishes a commit it did not prepare): a few at a time.
        let releases = of(REPLACE).into_iter().map(|key| {
            let replacement = held.get(&key_of(&key)).cloned();
            self.release(id, key, committed, replacement)
        });
        let mut releases = futures_util::stream::iter(releases).buffer_unordered(RELEASES_IN_FLIGHT);
        while let Some(released) = releases.next().await {
            released?;
        }
        for chunk in of(CREATE).chunks(MAX_TRANSACTION_ITEMS) {
            self.settle(id, chunk.to_vec(), committed).await?;
        }
        // The journal as it is now: the markers of the pages appended above too.
        let pages: Vec<Item> =
            self.journal(id).await?.iter().map(|i| key(journal_pk(id), get_s(i, "sk").unwrap_or_default())).collect();
        for chunk in pages.chunks(MAX_TRANSACTION_ITEMS) {
            let deletes = chunk.iter().map(|key| self.delete_action(key, None)).collect();
            self.transact(deletes).await.map_err(|(e, _)| e)?;
        }
        self.client
            .update_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(HEADERS, id)))
            .update_expression("SET done = :t, expires = :e")
            .expression_attribute_values(":t", AV::Bool(true))
            .expression_attribute_values(":e", n((now() + FINISHED_TTL_SECONDS) as u64))
            .send()
            .await
            .map_err(|e| super::port_error("dynamodb", &e))?;
        Ok(())
    }

    async fn journal(&self, id: &str) -> Result<Vec<Item>, PortError> {
        self.query_all(&|q| {
            q.key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(journal_pk(id)))
                .consistent_read(true)
        })
        .await
    }

    /// Appends one roll-forward page's audit records and events, once: its
    /// marker commits with them, so a repeat finds the marker and stops.
    async fn append_page(&self, id: &str, page: &Item) -> Result<(), PortError> {
        let page: JournalRecords = from_item(page)?;
        if page.records.is_empty() {
            return Ok(());
        }
        let marker = key(journal_pk(id), page.sk.replacen('R', "D", 1));
        let mut items = vec![super::put(&self.tables.records, marker, Some("attribute_not_exists(pk)"), &[])];
        for event in &page.events {
            items.push(super::put(&self.tables.outbox, to_item(event), Some("attribute_not_exists(pk)"), &[]));
        }
        match self.append_chain(items, vec![], &page.records).await {
            Err(PortError::ConditionFailed(0)) => Ok(()),
            other => other,
        }
    }

    /// A changed record's current item made final: the new item it holds
    /// in `pend` (committed) or the old one without it (aborted), only
    /// while it is still the transaction's. The new item is read back unless
    /// the caller has it.
    async fn release(&self, id: &str, key: Item, committed: bool, known: Option<Item>) -> Result<(), PortError> {
        if committed {
            let new = match known {
                Some(new) => new,
                None => {
                    let out = self
                        .client
                        .get_item()
                        .table_name(&self.tables.records)
                        .set_key(Some(key))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|e| super::port_error("dynamodb", &e))?;
                    match out.item().and_then(|i| Some(replacement(i, i.get("pend")?.as_m().ok()?))) {
                        Some(new) => new,
                        None => return Ok(()),
                    }
                }
            };
            let put = self
                .client
                .put_item()
                .table_name(&self.tables.records)
                .set_item(Some(new))
                .condition_expression("tx = :id")
                .expression_attribute_values(":id", s(id))
                .send()
                .await;
            unless_released(put)
        } else {
            let update = self
                .client
                .update_item()
                .table_name(&self.tables.records)
                .set_key(Some(key))
                .update_expression("REMOVE pend, tx")
                .condition_expression("tx = :id")
                .expression_attribute_values(":id", s(id))
                .send()
                .await;
            unless_released(update)
        }
    }

    /// Prepared items made final, a page (≤ 99) per call: their `tx`
    /// stripped (committed) or the items deleted (aborted), each only while
    /// it is still the transaction's. An item that no longer is (settled
    /// already, or changed since) cancels the call; it is left out and the
    /// rest go again.
    async fn settle(&self, id: &str, mut keys: Vec<Item>, committed: bool) -> Result<(), PortError> {
        while !keys.is_empty() {
            let actions = keys
                .iter()
                .map(|key| match committed {
                    true => {
                        let update = Update::builder()
                            .table_name(&self.tables.records)
                            .set_key(Some(key.clone()))
                            .update_expression("REMOVE tx")
                            .condition_expression("tx = :id")
                            .expression_attribute_values(":id", s(id))
                            .build()
                            .expect("table, key and expression set");
                        TransactWriteItem::builder().update(update).build()
                    }
                    false => self.delete_action(key, Some(id)),
                })
                .collect();
            match self.transact(actions).await {
                Ok(()) => return Ok(()),
                Err((_, failed)) if !failed.is_empty() => {
                    let mut i = 0;
                    keys.retain(|_| {
                        i += 1;
                        !failed.contains(&(i - 1))
                    });
                }
                Err((e, _)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes the item at `key` (only while it is transaction `id`'s, if given).
    fn delete_action(&self, key: &Item, id: Option<&str>) -> TransactWriteItem {
        let mut delete = Delete::builder().table_name(&self.tables.records).set_key(Some(key.clone()));
        if let Some(id) = id {
            delete = delete.condition_expression("tx = :id").expression_attribute_values(":id", s(id));
        }
        TransactWriteItem::builder().delete(delete.build().expect("table and key set")).build()
    }

    /// One `TransactWriteItems`; on failure the error and the indexes of
    /// the actions whose condition failed.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<(), (PortError, Vec<usize>)> {
        self.client
            .transact_write_items()
            .client_request_token(crate::crypto::random_id())
            .set_transact_items(Some(actions))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| (super::port_error("dynamodb", &e), super::cancelled_items(&e)))
    }

    /// Finishes every transaction left unfinished: committed ones roll
    /// forward, aborted ones and pending ones past their deadline roll
    /// back. The sweep after a crash; returns how many it finished.
    pub(super) async fn sweep(&self) -> Result<usize, PortError> {
        let headers = self
            .query_all(&|q| {
                q.key_condition_expression("pk = :pk")
                    .filter_expression("attribute_not_exists(done)")
                    .expression_attribute_values(":pk", s(HEADERS))
                    .consistent_read(true)
            })
            .await?;
        let mut finished = 0;
        for header in headers {
            let header: TransactionHeader = from_item(&header)?;
            let overdue = (header.deadline as i64) < now_millis();
            if header.state == "pending" && !(overdue && self.abort(&header.sk).await?) {
                continue;
            }
            self.finish(&header.sk, &Held::new()).await?;
            finished += 1;
        }
        Ok(finished)
    }

    async fn put_item(&self, item: Item, new: bool) -> Result<(), PortError> {
        let mut put = self.client.put_item().table_name(&self.tables.records).set_item(Some(item));
        if new {
            put = put.condition_expression("attribute_not_exists(pk)");
        }
        put.send().await.map(|_| ()).map_err(|e| super::port_error("dynamodb", &e))
    }
}
