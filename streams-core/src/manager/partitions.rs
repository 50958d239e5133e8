//! Partitioned streams as a manager sees them: the partition counts kept
//! in the backend, routing sends by key or in turn, and groups that read
//! every partition. See [`PartitionedStream`] for the layout.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;

use super::Manager;
use crate::backend::{CreateGroup, StartAt, StreamBackend};
use crate::config::ConsumerGroupConfig;
use crate::error::{Result, StreamError};
use crate::names::StreamUse;
use crate::partition::{PartitionedStream, split_partition};

/// The registry field that holds a stream's partition count.
const PARTITIONS: &str = "partitions";

impl<B: StreamBackend> Manager<B> {
    /// The stream `stream` as partitioned: its declared partition count, or
    /// one partition (the stream itself) when it was never partitioned.
    /// See [`StreamManager::partitioned_stream`](crate::StreamManager::partitioned_stream).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Decode`] for a count
    /// another client wrote badly, backend errors.
    pub async fn partitioned_stream(&self, stream: impl AsRef<str>) -> Result<PartitionedStream> {
        let stream = stream.as_ref();
        PartitionedStream::new(stream, 1)?;
        self.ready().await?;
        let count = self.read_count(stream).await?.unwrap_or(1);
        self.remember_count(stream, count);
        PartitionedStream::new(stream, count)
    }

    /// Every stream declared with partitions, sorted by name.
    /// See [`StreamManager::partitioned_streams`](crate::StreamManager::partitioned_streams).
    ///
    /// # Errors
    /// [`StreamError::Decode`] for a count another client wrote badly,
    /// backend errors.
    pub async fn partitioned_streams(&self) -> Result<Vec<PartitionedStream>> {
        self.ready().await?;
        let mut streams = self
            .read_counts()
            .await?
            .into_iter()
            .map(|(name, count)| PartitionedStream::new(name, count))
            .collect::<Result<Vec<_>>>()?;
        streams.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(streams)
    }

    /// Gives `stream` `partitions` partitions: creates every registered
    /// group that reads the stream on the new partitions, then records the
    /// count, so that nothing sent to a new partition goes unread.
    /// See [`StreamManager::declare_partitions`](crate::StreamManager::declare_partitions).
    ///
    /// # Errors
    /// [`StreamError::Config`] for fewer partitions than the stream has, or
    /// a count out of range; [`StreamError::InvalidName`]; backend errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = stream.as_ref(), partitions))]
    pub async fn declare_partitions(
        &self,
        stream: impl AsRef<str>,
        partitions: u32,
    ) -> Result<PartitionedStream> {
        let stream = stream.as_ref();
        let wanted = PartitionedStream::new(stream, partitions)?;
        self.keys().check_stream(stream, StreamUse::Send)?;
        self.ready().await?;
        let current = self.read_count(stream).await?;
        let have = current.unwrap_or(1);
        if partitions < have {
            return Err(StreamError::Config {
                message: format!(
                    "stream `{stream}` has {have} partitions; partitions can be added, \
                     never removed (each holds entries and group state)"
                ),
            });
        }
        if current == Some(partitions) {
            self.remember_count(stream, partitions);
            return Ok(wanted);
        }
        // A partition past the count that already holds entries is some
        // other stream of that name (written by another client): taking it
        // over would hand its entries to every group of this stream.
        for added in have..partitions {
            let name = wanted.stream(added);
            self.keys().check_stream(&name, StreamUse::Send)?;
            let found = self
                .peek_messages(&crate::PeekQuery::new(&name).with_count(1))
                .await?;
            if !found.is_empty() {
                return Err(StreamError::Config {
                    message: format!(
                        "stream `{name}` already exists with entries: it would become partition \
                         {added} of `{stream}`; move or delete it first"
                    ),
                });
            }
        }
        // The groups first: a producer can route to a new partition only
        // once the count is recorded, and by then every group reads it.
        self.widen_groups(&wanted).await?;
        let record = serde_json::json!({ PARTITIONS: partitions }).to_string();
        self.backend()
            .registry_put(self.keys().partitions(), stream, &record)
            .await?;
        // Again: a group registered meanwhile by a process that read the
        // old count.
        self.widen_groups(&wanted).await?;
        self.remember_count(stream, partitions);
        Ok(wanted)
    }

    /// Makes every registered group that lists `stream` by name read all
    /// its partitions; the ones it lacked are read from their beginning,
    /// whatever the group's `start` (anything on them was sent to the stream
    /// the group reads). A group that lists only some partitions by their
    /// own names is left as it is.
    async fn widen_groups(&self, stream: &PartitionedStream) -> Result<()> {
        for config in self.registered_groups().await? {
            if !config.streams.iter().any(|s| s == stream.name()) {
                continue;
            }
            let mut grown = config.clone();
            add_partitions(&mut grown.streams, stream);
            if grown.streams == config.streams {
                continue;
            }
            self.create_from_beginning(&config.name, &config.streams, &grown.streams)
                .await?;
            tracing::info!(group = %config.name, stream = stream.name(), partitions = stream.partitions(), "the group reads the new partitions");
            self.create_consumer_group(&grown).await?;
        }
        Ok(())
    }

    /// Creates `group` from the beginning of each stream of `now` not in
    /// `before`.
    pub(crate) async fn create_from_beginning(
        &self,
        group: &str,
        before: &[String],
        now: &[String],
    ) -> Result<()> {
        for added in now.iter().filter(|s| !before.contains(s)) {
            self.backend()
                .create_group(CreateGroup::new(
                    &self.keys().stream(added),
                    group,
                    StartAt::Beginning,
                ))
                .await?;
        }
        Ok(())
    }

    /// Sends to the partition of `key`; returns the entry id.
    /// See [`StreamManager::send_keyed`](crate::StreamManager::send_keyed).
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message).
    pub async fn send_keyed(
        &self,
        stream: impl AsRef<str>,
        key: &str,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String> {
        let stream = self.routing(stream.as_ref()).await?;
        self.send_message(stream.stream_for_key(key), data, max_len)
            .await
    }

    /// Sends to the partitions in turn; returns the entry id.
    /// See [`StreamManager::send_round_robin`](crate::StreamManager::send_round_robin).
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message).
    pub async fn send_round_robin(
        &self,
        stream: impl AsRef<str>,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String> {
        let stream = self.routing(stream.as_ref()).await?;
        let turn = self.inner.round_robin.fetch_add(1, Ordering::Relaxed);
        let partition = (turn % u64::from(stream.partitions())) as u32;
        self.send_message(stream.stream(partition), data, max_len)
            .await
    }

    /// Sends `(key, data)` pairs, each to its key's partition: one batch
    /// per partition, in the order given; returns the ids in that order.
    /// See [`StreamManager::send_batch_keyed`](crate::StreamManager::send_batch_keyed).
    ///
    /// # Errors
    /// As [`send_batch`](Self::send_batch). The partitions' batches go one
    /// after the other: when one fails, those before it were sent.
    pub async fn send_batch_keyed(
        &self,
        stream: impl AsRef<str>,
        items: Vec<(String, Value)>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>> {
        let stream = self.routing(stream.as_ref()).await?;
        let total = items.len();
        let mut batches: HashMap<u32, (Vec<usize>, Vec<Value>)> = HashMap::new();
        for (at, (key, data)) in items.into_iter().enumerate() {
            let batch = batches.entry(stream.partition_for_key(&key)).or_default();
            batch.0.push(at);
            batch.1.push(data);
        }
        let mut ids = vec![String::new(); total];
        let mut partitions: Vec<_> = batches.into_iter().collect();
        partitions.sort_by_key(|(p, _)| *p);
        for (partition, (positions, data)) in partitions {
            let sent = self
                .send_batch(stream.stream(partition), data, max_len)
                .await?;
            for (at, id) in positions.into_iter().zip(sent) {
                if let Some(slot) = ids.get_mut(at) {
                    *slot = id;
                }
            }
        }
        Ok(ids)
    }

    /// Refuses a send to a partition past its stream's partition count
    /// (`orders#7` of a stream of 4): no group would read it. Streams
    /// without a partition suffix cost nothing here.
    pub(crate) async fn check_partition(&self, stream: &str) -> Result<()> {
        let (base, partition) = split_partition(stream);
        if partition == 0 {
            return Ok(());
        }
        if partition < self.routing(base).await?.partitions() {
            return Ok(());
        }
        // The remembered count may be older than the stream's growth.
        if partition < self.partitioned_stream(base).await?.partitions() {
            return Ok(());
        }
        Err(StreamError::InvalidName {
            kind: "stream",
            name: stream.to_owned(),
            reason: "it names a partition its stream does not have (see `declare_partitions`)",
        })
    }

    /// Adds the partitions of the declared partitioned streams that
    /// `config` lists by name (partition 0) and does not list yet, each
    /// after its stream. One registry read.
    pub(crate) async fn expand_partitions(&self, config: &mut ConsumerGroupConfig) -> Result<()> {
        let counts = self.read_counts().await?;
        if counts.is_empty() {
            return Ok(());
        }
        let listed = config.streams.clone();
        for stream in &listed {
            if let Some(&count) = counts.get(stream.as_str())
                && count > 1
            {
                let partitioned = PartitionedStream::new(stream.clone(), count)?;
                add_partitions(&mut config.streams, &partitioned);
            }
        }
        Ok(())
    }

    /// The stream with the partition count to route by: remembered for
    /// [`ManagerConfig::refresh_interval`](crate::ManagerConfig::refresh_interval), then read again.
    async fn routing(&self, stream: &str) -> Result<PartitionedStream> {
        let remembered = self
            .inner
            .partition_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .filter(|(_, at)| at.elapsed() < self.config().refresh_interval)
            .map(|(count, _)| *count);
        match remembered {
            Some(count) => PartitionedStream::new(stream, count),
            None => self.partitioned_stream(stream).await,
        }
    }

    fn remember_count(&self, stream: &str, count: u32) {
        self.inner
            .partition_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream.to_owned(), (count, Instant::now()));
    }

    pub(crate) async fn read_count(&self, stream: &str) -> Result<Option<u32>> {
        match self
            .backend()
            .registry_get(self.keys().partitions(), stream)
            .await?
        {
            Some(record) => parse_count(stream, &record).map(Some),
            None => Ok(None),
        }
    }

    async fn read_counts(&self) -> Result<HashMap<String, u32>> {
        self.backend()
            .registry_list(self.keys().partitions())
            .await?
            .into_iter()
            .map(|(stream, record)| {
                let count = parse_count(&stream, &record)?;
                Ok((stream, count))
            })
            .collect()
    }
}

/// Adds the partitions of `stream` missing from `streams`, after the last
/// one listed (or at the end).
fn add_partitions(streams: &mut Vec<String>, stream: &PartitionedStream) {
    let missing: Vec<String> = stream
        .streams()
        .into_iter()
        .filter(|s| !streams.contains(s))
        .collect();
    if missing.is_empty() {
        return;
    }
    let after = streams
        .iter()
        .rposition(|s| split_partition(s).0 == stream.name())
        .map_or(streams.len(), |at| at + 1);
    streams.splice(after..after, missing);
}

/// A partition record: `{"partitions": <n>}`.
fn parse_count(stream: &str, record: &str) -> Result<u32> {
    let bad = |why: &str| StreamError::Decode {
        what: format!("partition count of stream `{stream}`"),
        message: why.to_owned(),
    };
    let value: Value = serde_json::from_str(record).map_err(|e| bad(&e.to_string()))?;
    let count = value
        .get(PARTITIONS)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no `partitions` number"))?;
    u32::try_from(count)
        .ok()
        .filter(|&n| (1..=crate::partition::MAX_PARTITIONS).contains(&n))
        .ok_or_else(|| bad("the count is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_added_after_their_stream() {
        let jobs = PartitionedStream::new("jobs", 3).unwrap();
        let mut streams = vec!["a".to_owned(), "jobs".to_owned(), "b".to_owned()];
        add_partitions(&mut streams, &jobs);
        assert_eq!(streams, ["a", "jobs", "jobs#1", "jobs#2", "b"]);
        // Already there: unchanged.
        add_partitions(&mut streams, &jobs);
        assert_eq!(streams.len(), 5);
        // Growing adds after the last one listed.
        add_partitions(&mut streams, &PartitionedStream::new("jobs", 4).unwrap());
        assert_eq!(streams, ["a", "jobs", "jobs#1", "jobs#2", "jobs#3", "b"]);
    }

    #[test]
    fn counts_written_badly_are_refused() {
        assert_eq!(parse_count("s", r#"{"partitions":4}"#).unwrap(), 4);
        for bad in [
            "",
            "4",
            r#"{"partitions":0}"#,
            r#"{"partitions":"4"}"#,
            r#"{"partitions":99999}"#,
        ] {
            assert!(
                matches!(parse_count("s", bad), Err(StreamError::Decode { .. })),
                "{bad}"
            );
        }
    }
}
