//! [`StreamBackend`] for [`MemoryBackend`]: each method is one command run
//! whole under the keyspace lock, never across an `.await`.

use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use streams_core::backend::{
    Ack, Add, AutoClaim, AutoClaimPage, Capabilities, ConsumerInfo, ConsumerRef, ConsumerRemoval,
    CreateGroup, EntryId, Feature, GroupInfo, GroupRegistry, KeyEntries, Lease, Move, MoveOutcome,
    PendingEntry, PendingQuery, Probe, Promotion, RangeQuery, ReadGroup, ScheduleKeys, ServerInfo,
    Transfer, TransferOutcome, Trim,
};
use streams_core::{Entry, Result, StreamBackend};

use crate::MemoryBackend;
use crate::commands::parse_ids;
use crate::error::{BACKEND, Error};
use crate::id::StreamId;
use crate::state::{Keyspace, Now};

/// The Redis version whose stream semantics the model follows.
const MODELLED_VERSION: &str = "7.0.0";

/// Idle time given to handed-back entries: longer than any claim threshold.
const HANDED_BACK_IDLE: Duration = Duration::from_secs(10 * 365 * 86_400);

impl MemoryBackend {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Keyspace> {
        // Commands do not panic while holding the lock; if one ever did, its
        // changes are whole or absent per map operation, so go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one command at one instant, then wakes the readers of every
    /// stream it added to, once the lock is released.
    pub(crate) fn with_state<T>(
        &self,
        command: impl FnOnce(&mut Keyspace, &Now) -> Result<T, Error>,
    ) -> Result<T> {
        let (result, wakes) = {
            let mut ks = self.lock();
            let result = command(&mut ks, &Now::read());
            (result, ks.take_wakes())
        };
        for signal in wakes {
            signal.wake();
        }
        result.map_err(Into::into)
    }

    /// `XCLAIM ... IDLE JUSTID` to the owner, with `RETRYCOUNT` one less
    /// when `refund`.
    fn set_idle(&self, lease: &Lease<'_>, idle: Duration, refund: bool) -> Result<Vec<EntryId>> {
        self.with_state(|ks, now| {
            let ids = parse_ids(lease.ids)?;
            // Nothing is pending in a group that does not exist.
            let Some(stream) = ks.stream_mut(lease.key)? else {
                return Ok(Vec::new());
            };
            let Some(g) = stream.groups.get_mut(lease.group) else {
                return Ok(Vec::new());
            };
            Ok(g.set_idle(
                &stream.entries,
                lease.consumer,
                &ids,
                lease.deliveries,
                idle,
                refund,
                now.tick(),
            ))
        })
    }
}

#[async_trait]
impl GroupRegistry for MemoryBackend {
    async fn registry_put(&self, key: &str, group: &str, config: &str) -> Result<()> {
        self.with_state(|ks, _| {
            ks.hash_entry(key)?
                .insert(group.to_owned(), config.to_owned());
            Ok(())
        })
    }

    async fn registry_get(&self, key: &str, group: &str) -> Result<Option<String>> {
        self.with_state(|ks, _| Ok(ks.hash(key)?.and_then(|h| h.get(group).cloned())))
    }

    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
        self.with_state(|ks, _| {
            Ok(ks.hash(key)?.map_or_else(Vec::new, |h| {
                h.iter().map(|(f, v)| (f.clone(), v.clone())).collect()
            }))
        })
    }
}

#[async_trait]
impl StreamBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// Everything but durable sends: there are no replicas to wait for.
    fn capabilities(&self) -> Capabilities {
        Capabilities::all().without(Feature::DurableSends)
    }

    /// Ids are `<ms>-<seq>`: the milliseconds are when the entry was added.
    fn entry_time(&self, id: &EntryId) -> Option<std::time::SystemTime> {
        let id = StreamId::of(id).ok()?;
        std::time::UNIX_EPOCH.checked_add(Duration::from_millis(id.ms))
    }

    async fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo::new(BACKEND, MODELLED_VERSION))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn write_probe(&self, probe: Probe<'_>) -> Result<()> {
        self.with_state(|ks, now| {
            ks.set_expiring(probe.key, probe.ttl, now.tick());
            Ok(())
        })
    }

    async fn create_group(&self, create: CreateGroup<'_>) -> Result<bool> {
        self.with_state(|ks, _| ks.create_group(create.key, create.group, &create.start))
    }

    async fn destroy_group(&self, key: &str, group: &str) -> Result<bool> {
        self.with_state(|ks, _| ks.destroy_group(key, group))
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<u64> {
        self.with_state(|ks, _| Ok(keys.iter().filter(|k| ks.delete(k)).count() as u64))
    }

    async fn add(&self, add: Add) -> Result<EntryId> {
        self.with_state(|ks, now| {
            ks.add_entry(&add.key, &add.fields, &add.trim, now)
                .map(StreamId::to_entry_id)
        })
    }

    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<EntryId>> {
        self.with_state(|ks, now| {
            // Check the whole batch first, so a bad item adds nothing.
            for add in &adds {
                ks.check_stream(&add.key)?;
                if add.fields.is_empty() {
                    return Err(Error::NoFields {
                        key: add.key.clone(),
                    });
                }
            }
            adds.into_iter()
                .map(|add| {
                    ks.add_entry(&add.key, &add.fields, &add.trim, now)
                        .map(StreamId::to_entry_id)
                })
                .collect()
        })
    }

    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
        self.read_group_blocking(read).await
    }

    async fn ack(&self, ack: Ack<'_>) -> Result<u64> {
        self.with_state(|ks, _| ks.ack(ack.key, ack.group, ack.ids, ack.delete))
    }

    async fn auto_claim(&self, claim: AutoClaim<'_>) -> Result<AutoClaimPage> {
        self.with_state(|ks, now| {
            let start = match &claim.start {
                Some(cursor) => StreamId::of(&EntryId::from(cursor.as_str()))?,
                None => StreamId::MIN,
            };
            if claim.count == 0 {
                return Err(Error::ZeroCount {
                    command: "XAUTOCLAIM",
                });
            }
            let (g, entries) = ks.group_mut(claim.key, claim.group)?;
            if !claim.until_redelivered {
                return Ok(g.auto_claim(
                    entries,
                    claim.consumer,
                    claim.min_idle,
                    start,
                    claim.count,
                    now.tick(),
                ));
            }
            // One entry at a time, as the Redis backend's script does.
            let mut page = AutoClaimPage::default();
            let mut from = start;
            for _ in 0..claim.count {
                let one =
                    g.auto_claim(entries, claim.consumer, claim.min_idle, from, 1, now.tick());
                let redelivered = one.entries.iter().any(|e| e.deliveries >= 2);
                page.entries.extend(one.entries);
                page.deleted.extend(one.deleted);
                page.next = one.next;
                let Some(next) = &page.next else { break };
                if redelivered || page.entries.len() + page.deleted.len() >= claim.count {
                    break;
                }
                from = StreamId::of(&EntryId::from(next.as_str()))?;
            }
            Ok(page)
        })
    }

    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
        self.with_state(|ks, now| {
            let interval = StreamId::interval(&query.start, &query.end)?;
            let (g, _) = ks.group(query.key, query.group)?;
            Ok(match interval {
                Some(interval) => g.pending(
                    interval,
                    query.count,
                    query.consumer,
                    query.min_idle,
                    now.tick(),
                ),
                None => Vec::new(),
            })
        })
    }

    async fn redeliver(&self, lease: Lease<'_>) -> Result<KeyEntries> {
        self.with_state(|ks, now| {
            let ids = parse_ids(lease.ids)?;
            let (g, entries) = ks.group_mut(lease.key, lease.group)?;
            let (served, deleted) =
                g.redeliver(entries, lease.consumer, &ids, lease.deliveries, now.tick());
            let mut reply = KeyEntries::new(lease.key);
            reply.entries = served;
            reply.deleted = deleted;
            Ok(reply)
        })
    }

    async fn renew(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        self.set_idle(&lease, Duration::ZERO, false)
    }

    async fn hand_back(&self, lease: Lease<'_>) -> Result<Vec<EntryId>> {
        self.set_idle(&lease, HANDED_BACK_IDLE, true)
    }

    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
        self.with_state(|ks, now| ks.move_entry(mv, now))
    }

    async fn promote_due(
        &self,
        schedules: &[ScheduleKeys],
        limit: usize,
    ) -> Result<Vec<Promotion>> {
        self.with_state(|ks, now| {
            Ok(schedules
                .iter()
                .map(|keys| {
                    ks.promote(&keys.schedule, &keys.ready, limit, now)
                        .unwrap_or_else(|e| Promotion::failed(e.to_string()))
                })
                .collect())
        })
    }

    async fn schedule_len(&self, key: &str) -> Result<u64> {
        self.with_state(|ks, _| Ok(ks.schedule(key)?.map_or(0, |s| s.len() as u64)))
    }

    async fn trim(&self, key: &str, trim: Trim) -> Result<u64> {
        self.with_state(|ks, now| match ks.stream_mut(key)? {
            Some(s) => s.trim(trim, now.ms()),
            None => Ok(0),
        })
    }

    async fn len(&self, key: &str) -> Result<u64> {
        self.with_state(|ks, _| Ok(ks.stream(key)?.map_or(0, |s| s.entries.len() as u64)))
    }

    async fn range(&self, query: RangeQuery<'_>) -> Result<Vec<Entry>> {
        self.with_state(|ks, _| {
            let interval = StreamId::interval(&query.start, &query.end)?;
            Ok(match (ks.stream(query.key)?, interval) {
                (Some(stream), Some(interval)) => {
                    stream.range(interval, query.count, query.newest_first)
                }
                _ => Vec::new(),
            })
        })
    }

    async fn transfer(&self, transfer: Transfer) -> Result<TransferOutcome> {
        self.with_state(|ks, now| ks.transfer(transfer, now))
    }

    async fn delete_entries(&self, key: &str, ids: &[EntryId]) -> Result<Vec<EntryId>> {
        self.with_state(|ks, _| ks.delete_entries(key, ids))
    }

    async fn stream_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.with_state(|ks, _| Ok(ks.stream_keys(prefix)))
    }

    async fn groups(&self, key: &str) -> Result<Vec<GroupInfo>> {
        self.with_state(|ks, _| {
            Ok(ks.stream(key)?.map_or_else(Vec::new, |s| {
                s.groups
                    .iter()
                    .map(|(name, g)| g.info(name, &s.entries))
                    .collect()
            }))
        })
    }

    async fn consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        self.with_state(|ks, now| Ok(ks.group(key, group)?.0.consumer_infos(now.tick())))
    }

    async fn delete_consumer(&self, c: ConsumerRef<'_>) -> Result<ConsumerRemoval> {
        self.with_state(|ks, _| {
            Ok(ks
                .stream_mut(c.key)?
                .and_then(|s| s.groups.get_mut(c.group))
                .map_or(ConsumerRemoval::Missing, |g| g.delete_consumer(c.consumer)))
        })
    }

    async fn close(&self) -> Result<()> {
        // Other handles may share the data, as clients share one server.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use bytes::Bytes;
    use streams_core::StreamError;
    use streams_core::backend::{ConsumerRef, Cursor, MoveTarget, StartAt};

    use super::*;

    fn add(key: &str, v: &str) -> Add {
        Add::new(key, vec![(Bytes::from("k"), Bytes::from(v.to_owned()))])
    }

    fn is_wrong_type(r: Result<impl std::fmt::Debug>) -> bool {
        match r {
            Err(StreamError::Backend { backend, source }) => {
                backend == "memory" && source.to_string().contains("WRONGTYPE")
            }
            _ => false,
        }
    }

    fn ids(v: &[&str]) -> Vec<EntryId> {
        v.iter().map(|s| EntryId::from(*s)).collect()
    }

    #[tokio::test]
    async fn every_command_checks_the_key_type() {
        let b = MemoryBackend::new();
        b.registry_put("h", "f", "v").await.unwrap();
        b.add(add("s", "1")).await.unwrap();
        assert!(is_wrong_type(b.add(add("h", "1")).await));
        assert!(is_wrong_type(b.len("h").await));
        assert!(is_wrong_type(b.range(RangeQuery::new("h", 10)).await));
        assert!(is_wrong_type(
            b.trim(
                "h",
                Trim::MaxLen {
                    len: 1,
                    approx: false
                }
            )
            .await
        ));
        assert!(is_wrong_type(
            b.create_group(CreateGroup::new("h", "g", StartAt::Beginning))
                .await
        ));
        assert!(is_wrong_type(b.ack(Ack::new("h", "g", &[])).await));
        assert!(is_wrong_type(b.groups("h").await));
        assert!(is_wrong_type(b.destroy_group("h", "g").await));
        assert!(is_wrong_type(b.schedule_len("s").await));
        assert!(is_wrong_type(b.registry_put("s", "f", "v").await));
        assert!(is_wrong_type(b.registry_get("s", "f").await));
        assert!(is_wrong_type(b.registry_list("s").await));
        // A schedule that cannot be promoted says why, and the call goes on.
        let promo = b
            .promote_due(
                &[ScheduleKeys::new("s", "x"), ScheduleKeys::new("none", "y")],
                1,
            )
            .await
            .unwrap();
        assert!(promo[0].error.as_deref().unwrap().contains("WRONGTYPE"));
        assert_eq!(promo[1], Promotion::default());
        assert!(is_wrong_type(
            b.add_batch(vec![add("s", "2"), add("h", "3")]).await
        ));
        assert_eq!(b.len("s").await.unwrap(), 1, "a refused batch adds nothing");
        let keys = ["h".to_owned()];
        assert!(is_wrong_type(
            b.read_group(ReadGroup::new("g", "c", &keys, 1)).await
        ));
    }

    #[tokio::test]
    async fn missing_things_read_as_empty_or_nogroup() {
        let b = MemoryBackend::new();
        assert_eq!(b.len("none").await.unwrap(), 0);
        assert!(
            b.range(RangeQuery::new("none", 10))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(b.groups("none").await.unwrap().is_empty());
        assert_eq!(b.schedule_len("none").await.unwrap(), 0);
        assert_eq!(
            b.trim(
                "none",
                Trim::MaxLen {
                    len: 0,
                    approx: true
                }
            )
            .await
            .unwrap(),
            0
        );
        assert_eq!(b.registry_get("none", "f").await.unwrap(), None);
        assert!(b.registry_list("none").await.unwrap().is_empty());
        assert!(!b.destroy_group("none", "g").await.unwrap());
        assert_eq!(b.delete_keys(&["none".to_owned()]).await.unwrap(), 0);
        assert_eq!(
            b.delete_consumer(ConsumerRef::new("none", "g", "c"))
                .await
                .unwrap(),
            ConsumerRemoval::Missing
        );
        let nogroup = |r: Result<_>| matches!(r, Err(StreamError::NoGroup { .. }));
        assert!(nogroup(b.consumers("none", "g").await.map(|_| ())));
        assert!(nogroup(
            b.auto_claim(AutoClaim::new("none", "g", "c", Duration::ZERO, 10))
                .await
                .map(|_| ())
        ));
        // Like the Redis backend's script: nothing is pending there.
        let one = ids(&["1-0"]);
        let lease = Lease::new("none", "g", "c", &one);
        assert!(b.renew(lease.clone()).await.unwrap().is_empty());
        assert!(b.hand_back(lease).await.unwrap().is_empty());
        assert!(nogroup(
            b.pending(PendingQuery::new("none", "g", 10))
                .await
                .map(|_| ())
        ));
        b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
            .await
            .unwrap();
        assert!(nogroup(b.consumers("s", "other").await.map(|_| ())));
        assert_eq!(
            b.delete_consumer(ConsumerRef::new("s", "g", "nobody"))
                .await
                .unwrap(),
            ConsumerRemoval::Missing
        );
        let mv = Move::new(
            "none",
            "g",
            EntryId::from("1-0"),
            MoveTarget::Stream {
                key: "t".into(),
                fields: add("t", "x").fields,
                trim: Vec::new(),
            },
        );
        assert_eq!(b.move_entry(mv).await.unwrap(), MoveOutcome::NotPending);
        assert_eq!(b.len("t").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        let b = MemoryBackend::new();
        b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
            .await
            .unwrap();
        let mut empty = add("s", "x");
        empty.fields.clear();
        assert!(b.add(empty).await.is_err());
        assert!(
            b.auto_claim(AutoClaim::new("s", "g", "c", Duration::ZERO, 0))
                .await
                .is_err()
        );
        let bad_cursor =
            AutoClaim::new("s", "g", "c", Duration::ZERO, 1).from_cursor(Some(Cursor::new("zero")));
        assert!(b.auto_claim(bad_cursor).await.is_err());
        let bad =
            RangeQuery::new("s", 1).within(Bound::Included(EntryId::from("x")), Bound::Unbounded);
        assert!(b.range(bad).await.is_err());
        assert!(b.ack(Ack::new("s", "g", &ids(&["1-x"]))).await.is_err());
        assert!(
            b.renew(Lease::new("s", "g", "c", &ids(&[""])))
                .await
                .is_err()
        );
        assert!(
            b.create_group(CreateGroup::new(
                "t",
                "g",
                StartAt::After(EntryId::from("x"))
            ))
            .await
            .is_err()
        );
        let last = AutoClaim::new("s", "g", "c", Duration::MAX, 1).from_cursor(Some(Cursor::new(
            "18446744073709551615-18446744073709551615",
        )));
        assert_eq!(b.auto_claim(last).await.unwrap().next, None);
        let reversed = RangeQuery::new("s", 10).within(
            Bound::Included(EntryId::from("9-0")),
            Bound::Included(EntryId::from("1-0")),
        );
        assert!(b.range(reversed).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn range_bounds() {
        let b = MemoryBackend::new();
        let mut added = Vec::new();
        for v in ["a", "b", "c"] {
            added.push(b.add(add("s", v)).await.unwrap());
        }
        let all = b.range(RangeQuery::new("s", 10)).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), added);
        assert_eq!(b.range(RangeQuery::new("s", 2)).await.unwrap().len(), 2);
        assert!(b.range(RangeQuery::new("s", 0)).await.unwrap().is_empty());
        let exclusive =
            RangeQuery::new("s", 10).within(Bound::Excluded(added[0].clone()), Bound::Unbounded);
        assert_eq!(b.range(exclusive).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn groups_start_after_an_id_only_within_history() {
        let b = MemoryBackend::new();
        let first = b.add(add("s", "a")).await.unwrap();
        let second = b.add(add("s", "b")).await.unwrap();
        let start = StartAt::After(first.clone());
        assert!(
            b.create_group(CreateGroup::new("s", "g", start))
                .await
                .unwrap()
        );
        let keys = ["s".to_owned()];
        let got = b
            .read_group(ReadGroup::new("g", "c", &keys, 10))
            .await
            .unwrap();
        assert_eq!(got[0].entries[0].entry.id, second);
        // An id beyond the stream's history: the stream was written anew.
        let beyond = StartAt::After(EntryId::from("99999999999999-0"));
        assert!(
            b.create_group(CreateGroup::new("s", "h", beyond))
                .await
                .unwrap()
        );
        let got = b
            .read_group(ReadGroup::new("h", "c", &keys, 10))
            .await
            .unwrap();
        assert_eq!(got[0].entries.len(), 2);
        assert!(b.destroy_group("s", "h").await.unwrap());
        assert_eq!(b.groups("s").await.unwrap().len(), 1);
        assert_eq!(
            b.delete_keys(&["s".to_owned(), "none".to_owned()])
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn clones_share_data_and_close_keeps_it() {
        let a = MemoryBackend::new();
        let b = a.clone();
        a.add(add("s", "1")).await.unwrap();
        a.registry_put("reg", "g", "{}").await.unwrap();
        a.close().await.unwrap();
        assert_eq!(b.len("s").await.unwrap(), 1);
        assert_eq!(
            b.registry_list("reg").await.unwrap(),
            [("g".to_owned(), "{}".to_owned())]
        );
        assert_eq!(
            format!("{b:?}"),
            "MemoryBackend { streams: 1, schedules: 0, hashes: 1 }"
        );
        let info = b.server_info().await.unwrap();
        assert_eq!((info.backend, info.version.as_str()), ("memory", "7.0.0"));
        b.ping().await.unwrap();
        assert_eq!(b.name(), "memory");
        assert_eq!(b.delete_keys(&["reg".to_owned()]).await.unwrap(), 1);
        assert_eq!(
            format!("{b:?}"),
            "MemoryBackend { streams: 1, schedules: 0, hashes: 0 }"
        );
    }

    #[tokio::test]
    async fn consumers_report_pending_and_idle() {
        let b = MemoryBackend::new();
        b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
            .await
            .unwrap();
        b.add(add("s", "1")).await.unwrap();
        let keys = ["s".to_owned()];
        b.read_group(ReadGroup::new("g", "c", &keys, 1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cs = b.consumers("s", "g").await.unwrap();
        assert_eq!((cs[0].name.as_str(), cs[0].pending), ("c", 1));
        assert!(cs[0].idle >= Duration::from_millis(20));
        let groups = b.groups("s").await.unwrap();
        assert_eq!(
            (groups[0].consumers, groups[0].pending, groups[0].lag),
            (1, 1, Some(0))
        );
        assert_eq!(
            b.delete_consumer(ConsumerRef::new("s", "g", "c"))
                .await
                .unwrap(),
            ConsumerRemoval::HasPending(1)
        );
    }
}
