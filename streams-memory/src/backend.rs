//! [`StreamBackend`] for [`MemoryBackend`]: each method is one command run
//! whole under the keyspace lock, never across an `.await`.

use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use streams_core::backend::{
    Add, AutoClaimPage, ConsumerInfo, ConsumerRemoval, GroupInfo, KeyEntries, Move, MoveOutcome,
    PendingEntry, PendingQuery, Promotion, ReadGroup, ServerInfo, Trim,
};
use streams_core::{Entry, Result, StreamBackend};

use crate::MemoryBackend;
use crate::commands::parse_ids;
use crate::error::{BACKEND, Error};
use crate::id::{End, StreamId};
use crate::state::{Keyspace, Now};

/// The Redis version whose stream semantics the model follows.
const MODELLED_VERSION: (u32, u32, u32) = (7, 0, 0);

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
        command: impl FnOnce(&mut Keyspace, Now) -> Result<T, Error>,
    ) -> Result<T> {
        let (result, wakes) = {
            let mut ks = self.lock();
            let result = command(&mut ks, Now::read());
            (result, ks.take_wakes())
        };
        for signal in wakes {
            signal.notify_waiters();
        }
        result.map_err(Into::into)
    }
}

#[async_trait]
impl StreamBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            backend: BACKEND,
            version: MODELLED_VERSION,
        })
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_group(&self, key: &str, group: &str, start: &str) -> Result<bool> {
        self.with_state(|ks, _| ks.create_group(key, group, start))
    }

    async fn add(&self, add: Add) -> Result<String> {
        self.with_state(|ks, now| {
            ks.add_entry(&add.key, add.fields, &add.trim, now)
                .map(|id| id.to_string())
        })
    }

    async fn add_batch(&self, adds: Vec<Add>) -> Result<Vec<String>> {
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
                    ks.add_entry(&add.key, add.fields, &add.trim, now)
                        .map(|id| id.to_string())
                })
                .collect()
        })
    }

    async fn read_group(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
        self.read_group_blocking(read).await
    }

    async fn ack(&self, key: &str, group: &str, ids: &[String], delete: bool) -> Result<u64> {
        self.with_state(|ks, _| ks.ack(key, group, ids, delete))
    }

    async fn auto_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: &str,
        count: usize,
    ) -> Result<AutoClaimPage> {
        self.with_state(|ks, now| {
            let start = StreamId::parse_bound(start, End::Start)?;
            if count == 0 {
                return Err(Error::ZeroCount {
                    command: "XAUTOCLAIM",
                });
            }
            let (g, entries) = ks.group_mut(key, group)?;
            Ok(match start {
                Some(start) => g.auto_claim(entries, consumer, min_idle, start, count, now.tick),
                // `(` past the last possible id: nothing to scan.
                None => AutoClaimPage {
                    next: StreamId::MIN.to_string(),
                    ..AutoClaimPage::default()
                },
            })
        })
    }

    async fn pending(&self, query: PendingQuery<'_>) -> Result<Vec<PendingEntry>> {
        self.with_state(|ks, now| {
            let interval = StreamId::parse_interval(query.start, query.end)?;
            let (g, _) = ks.group(query.key, query.group)?;
            Ok(match interval {
                Some(interval) => g.pending(
                    interval,
                    query.count,
                    query.consumer,
                    query.min_idle,
                    now.tick,
                ),
                None => Vec::new(),
            })
        })
    }

    async fn set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
        idle: Duration,
    ) -> Result<Vec<String>> {
        self.with_state(|ks, now| {
            let ids = parse_ids(ids)?;
            // Nothing is pending in a group that does not exist.
            let Some(stream) = ks.stream_mut(key)? else {
                return Ok(Vec::new());
            };
            let Some(g) = stream.groups.get_mut(group) else {
                return Ok(Vec::new());
            };
            Ok(g.set_idle(&stream.entries, consumer, &ids, idle, now.tick))
        })
    }

    async fn move_entry(&self, mv: Move) -> Result<MoveOutcome> {
        self.with_state(|ks, now| ks.move_entry(mv, now))
    }

    async fn promote_due(
        &self,
        pairs: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Promotion>> {
        self.with_state(|ks, now| {
            pairs
                .iter()
                .map(|(schedule, ready)| ks.promote(schedule, ready, limit, now))
                .collect()
        })
    }

    async fn schedule_len(&self, key: &str) -> Result<u64> {
        self.with_state(|ks, _| Ok(ks.schedule(key)?.map_or(0, |s| s.len() as u64)))
    }

    async fn trim(&self, key: &str, trim: Trim) -> Result<u64> {
        self.with_state(|ks, now| Ok(ks.stream_mut(key)?.map_or(0, |s| s.trim(trim, now.ms))))
    }

    async fn len(&self, key: &str) -> Result<u64> {
        self.with_state(|ks, _| Ok(ks.stream(key)?.map_or(0, |s| s.entries.len() as u64)))
    }

    async fn range(&self, key: &str, start: &str, end: &str, count: usize) -> Result<Vec<Entry>> {
        self.with_state(|ks, _| {
            let interval = StreamId::parse_interval(start, end)?;
            Ok(match (ks.stream(key)?, interval) {
                (Some(stream), Some(interval)) => stream.range(interval, count),
                _ => Vec::new(),
            })
        })
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
        self.with_state(|ks, now| Ok(ks.group(key, group)?.0.consumer_infos(now.tick)))
    }

    async fn delete_consumer(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
    ) -> Result<ConsumerRemoval> {
        self.with_state(|ks, _| {
            Ok(ks
                .stream_mut(key)?
                .and_then(|s| s.groups.get_mut(group))
                .map_or(ConsumerRemoval::Missing, |g| g.delete_consumer(consumer)))
        })
    }

    async fn registry_put(&self, key: &str, field: &str, value: &str) -> Result<()> {
        self.with_state(|ks, _| {
            ks.hash_entry(key)?
                .insert(field.to_owned(), value.to_owned());
            Ok(())
        })
    }

    async fn registry_get(&self, key: &str, field: &str) -> Result<Option<String>> {
        self.with_state(|ks, _| Ok(ks.hash(key)?.and_then(|h| h.get(field).cloned())))
    }

    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>> {
        self.with_state(|ks, _| {
            Ok(ks.hash(key)?.map_or_else(Vec::new, |h| {
                h.iter().map(|(f, v)| (f.clone(), v.clone())).collect()
            }))
        })
    }

    async fn close(&self) -> Result<()> {
        // Other handles may share the data, as clients share one server.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use streams_core::StreamError;
    use streams_core::backend::{MoveTarget, ReadCursor};

    use super::*;

    fn add(key: &str, v: &str) -> Add {
        Add {
            key: key.to_owned(),
            fields: vec![(Bytes::from("k"), Bytes::from(v.to_owned()))],
            trim: Vec::new(),
        }
    }

    fn is_wrong_type(r: Result<impl std::fmt::Debug>) -> bool {
        match r {
            Err(StreamError::Backend { backend, source }) => {
                backend == "memory" && source.to_string().contains("WRONGTYPE")
            }
            _ => false,
        }
    }

    #[tokio::test]
    async fn every_command_checks_the_key_type() {
        let b = MemoryBackend::new();
        b.registry_put("h", "f", "v").await.unwrap();
        b.add(add("s", "1")).await.unwrap();
        assert!(is_wrong_type(b.add(add("h", "1")).await));
        assert!(is_wrong_type(b.len("h").await));
        assert!(is_wrong_type(b.range("h", "-", "+", 10).await));
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
        assert!(is_wrong_type(b.create_group("h", "g", "0").await));
        assert!(is_wrong_type(b.ack("h", "g", &[], false).await));
        assert!(is_wrong_type(b.groups("h").await));
        assert!(is_wrong_type(b.schedule_len("s").await));
        assert!(is_wrong_type(b.registry_put("s", "f", "v").await));
        assert!(is_wrong_type(b.registry_get("s", "f").await));
        assert!(is_wrong_type(b.registry_list("s").await));
        assert!(is_wrong_type(
            b.promote_due(&[("s".into(), "x".into())], 1).await
        ));
        assert!(is_wrong_type(
            b.add_batch(vec![add("s", "2"), add("h", "3")]).await
        ));
        assert_eq!(b.len("s").await.unwrap(), 1, "a refused batch adds nothing");
        let keys = [("h".to_owned(), ReadCursor::New)];
        let read = ReadGroup {
            group: "g",
            consumer: "c",
            keys: &keys,
            count: 1,
            block: None,
        };
        assert!(is_wrong_type(b.read_group(read).await));
    }

    #[tokio::test]
    async fn missing_things_read_as_empty_or_nogroup() {
        let b = MemoryBackend::new();
        assert_eq!(b.len("none").await.unwrap(), 0);
        assert!(b.range("none", "-", "+", 10).await.unwrap().is_empty());
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
        assert_eq!(
            b.delete_consumer("none", "g", "c").await.unwrap(),
            ConsumerRemoval::Missing
        );
        let nogroup = |r: Result<_>| matches!(r, Err(StreamError::NoGroup { .. }));
        assert!(nogroup(b.consumers("none", "g").await.map(|_| ())));
        assert!(nogroup(
            b.auto_claim("none", "g", "c", Duration::ZERO, "0-0", 10)
                .await
                .map(|_| ())
        ));
        // Like the Redis backend's script: nothing is pending there.
        let ids = ["1-0".to_owned()];
        assert!(
            b.set_idle("none", "g", "c", &ids, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        let q = PendingQuery {
            key: "none",
            group: "g",
            start: "-",
            end: "+",
            count: 10,
            consumer: None,
            min_idle: None,
        };
        assert!(nogroup(b.pending(q).await.map(|_| ())));
        b.create_group("s", "g", "0").await.unwrap();
        assert!(nogroup(b.consumers("s", "other").await.map(|_| ())));
        assert_eq!(
            b.delete_consumer("s", "g", "nobody").await.unwrap(),
            ConsumerRemoval::Missing
        );
        let mv = Move {
            source: "none".into(),
            group: "g".into(),
            id: "1-0".into(),
            consumer: None,
            delete_source: false,
            target: MoveTarget::Stream {
                key: "t".into(),
                fields: add("t", "x").fields,
                trim: Vec::new(),
            },
        };
        assert_eq!(b.move_entry(mv).await.unwrap(), MoveOutcome::NotPending);
        assert_eq!(b.len("t").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        let b = MemoryBackend::new();
        b.create_group("s", "g", "0").await.unwrap();
        let mut empty = add("s", "x");
        empty.fields.clear();
        assert!(b.add(empty).await.is_err());
        assert!(
            b.auto_claim("s", "g", "c", Duration::ZERO, "0-0", 0)
                .await
                .is_err()
        );
        assert!(
            b.auto_claim("s", "g", "c", Duration::ZERO, "zero", 1)
                .await
                .is_err()
        );
        assert!(b.range("s", "x", "+", 1).await.is_err());
        assert!(b.ack("s", "g", &["1-x".to_owned()], false).await.is_err());
        assert!(
            b.set_idle("s", "g", "c", &["".to_owned()], Duration::MAX)
                .await
                .is_err()
        );
        let page = b
            .auto_claim(
                "s",
                "g",
                "c",
                Duration::MAX,
                "(18446744073709551615-18446744073709551615",
                1,
            )
            .await
            .unwrap();
        assert_eq!(page.next, "0-0");
        assert!(b.range("s", "+", "-", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn range_takes_redis_interval_forms() {
        let b = MemoryBackend::new();
        let mut ids = Vec::new();
        for v in ["a", "b", "c"] {
            ids.push(b.add(add("s", v)).await.unwrap());
        }
        let all = b.range("s", "-", "+", 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(b.range("s", "-", "+", 2).await.unwrap().len(), 2);
        assert!(b.range("s", "-", "+", 0).await.unwrap().is_empty());
        let exclusive = b
            .range("s", &format!("({}", ids[0]), "+", 10)
            .await
            .unwrap();
        assert_eq!(exclusive.len(), 2);
        // A bare millisecond covers every sequence of it.
        let ms = ids[0].split('-').next().unwrap_or_default();
        let same_ms = b.range("s", ms, ms, 10).await.unwrap();
        assert!(!same_ms.is_empty());
        assert_eq!(same_ms[0].id, ids[0]);
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
        assert_eq!(
            (info.backend, info.version_string().as_str()),
            ("memory", "7.0.0")
        );
        b.ping().await.unwrap();
        assert_eq!(b.name(), "memory");
    }

    #[tokio::test]
    async fn consumers_report_pending_and_idle() {
        let b = MemoryBackend::new();
        b.create_group("s", "g", "0").await.unwrap();
        b.add(add("s", "1")).await.unwrap();
        let keys = [("s".to_owned(), ReadCursor::New)];
        let read = ReadGroup {
            group: "g",
            consumer: "c",
            keys: &keys,
            count: 1,
            block: None,
        };
        b.read_group(read).await.unwrap();
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
            b.delete_consumer("s", "g", "c").await.unwrap(),
            ConsumerRemoval::HasPending(1)
        );
    }
}
