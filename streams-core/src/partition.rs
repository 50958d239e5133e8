//! Partitioned streams: one logical stream split over several streams.
//!
//! Partition 0 of a stream `jobs` is the stream `jobs` itself; partition
//! `i` (from 1) is the stream `jobs#i`. So a stream that was never
//! partitioned is a stream of one partition, a stream can grow partitions
//! without moving what it holds, and a producer that does not know about
//! partitions writes to partition 0, which every group of the stream reads.
//! Each partition is an ordinary stream (its own key, and in a Redis Cluster
//! its own hash tag, so partitions spread over the nodes): reads, claims,
//! retries and dead letters work on it as on any stream.
//!
//! A key goes to partition `crc32(key) % partitions` (CRC-32/ISO-HDLC, the
//! checksum of zlib, `zlib.crc32` in Python, `hash/crc32` in Go), so a
//! client in any language routes the same key to the same partition.

use crate::error::{Result, StreamError};
use crate::names::validate_name;

/// Most partitions one stream may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The separator between a stream's name and its partition number.
const SEPARATOR: char = '#';

/// A logical stream and how many partitions it has.
///
/// ```
/// use streams_core::PartitionedStream;
///
/// let jobs = PartitionedStream::new("jobs", 4).unwrap();
/// assert_eq!(jobs.streams(), ["jobs", "jobs#1", "jobs#2", "jobs#3"]);
/// // The same key always goes to the same partition.
/// assert_eq!(jobs.stream_for_key("customer-42"), jobs.stream_for_key("customer-42"));
/// assert_eq!(jobs.partition_for_key("customer-42"), crc32("customer-42") % 4);
/// # fn crc32(s: &str) -> u32 { crc32fast::hash(s.as_bytes()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionedStream {
    name: String,
    partitions: u32,
}

impl PartitionedStream {
    /// A stream `name` of `partitions` partitions.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] when `name` is not a valid stream name,
    /// ends in `#<digits>` like the name of a partition (`jobs#2`), or leaves no room for
    /// the partition suffix; [`StreamError::Config`] when `partitions` is 0
    /// or more than [`MAX_PARTITIONS`].
    pub fn new(name: impl Into<String>, partitions: u32) -> Result<Self> {
        let name = name.into();
        validate_name("stream", &name)?;
        let digit_suffix = name
            .rsplit_once(SEPARATOR)
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if digit_suffix {
            return Err(StreamError::InvalidName {
                kind: "stream",
                name,
                reason: "it ends in `#<digits>`, the form of partition names (`<stream>#<n>`)",
            });
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StreamError::Config {
                message: format!(
                    "stream `{name}`: {partitions} partitions; a stream has 1 to {MAX_PARTITIONS}"
                ),
            });
        }
        let stream = Self { name, partitions };
        validate_name("stream", &stream.stream(partitions - 1))?;
        Ok(stream)
    }

    /// The logical stream's name (also the name of partition 0).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many partitions it has.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The stream that holds `partition`: the name itself for 0,
    /// `<name>#<partition>` after that. A number past the last partition is
    /// not checked: it names the partition the stream would have if it grew.
    pub fn stream(&self, partition: u32) -> String {
        partition_stream(&self.name, partition)
    }

    /// Every partition's stream, in partition order.
    pub fn streams(&self) -> Vec<String> {
        (0..self.partitions).map(|p| self.stream(p)).collect()
    }

    /// The partition of `key`: `crc32(key) % partitions`.
    pub fn partition_for_key(&self, key: &str) -> u32 {
        crc32fast::hash(key.as_bytes()) % self.partitions
    }

    /// The stream of `key`'s partition.
    pub fn stream_for_key(&self, key: &str) -> String {
        self.stream(self.partition_for_key(key))
    }
}

/// The stream of partition `partition` of `name`: `name` for 0,
/// `name#partition` after that.
///
/// ```
/// use streams_core::partition_stream;
///
/// assert_eq!(partition_stream("jobs", 0), "jobs");
/// assert_eq!(partition_stream("jobs", 3), "jobs#3");
/// ```
pub fn partition_stream(name: &str, partition: u32) -> String {
    if partition == 0 {
        name.to_owned()
    } else {
        format!("{name}{SEPARATOR}{partition}")
    }
}

/// The logical stream a stream belongs to, and its partition number:
/// `jobs#3` is partition 3 of `jobs`; any other name is partition 0 of
/// itself. Only the canonical form counts (`jobs#03` and `jobs#0` are
/// streams of their own).
///
/// ```
/// use streams_core::split_partition;
///
/// assert_eq!(split_partition("jobs#3"), ("jobs", 3));
/// assert_eq!(split_partition("jobs"), ("jobs", 0));
/// assert_eq!(split_partition("jobs#03"), ("jobs#03", 0));
/// ```
pub fn split_partition(stream: &str) -> (&str, u32) {
    let Some((base, number)) = stream.rsplit_once(SEPARATOR) else {
        return (stream, 0);
    };
    let canonical = !base.is_empty()
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0');
    match number.parse::<u32>() {
        Ok(n) if canonical && n < MAX_PARTITIONS => (base, n),
        _ => (stream, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let s = PartitionedStream::new("xnai:agent_bus", 16).unwrap();
        for (p, name) in s.streams().iter().enumerate() {
            assert_eq!(split_partition(name), ("xnai:agent_bus", p as u32));
        }
        assert_eq!(split_partition("a#b#2"), ("a#b", 2));
        assert_eq!(split_partition("#2"), ("#2", 0));
        assert_eq!(split_partition("a#"), ("a#", 0));
        assert_eq!(split_partition("a#1024"), ("a#1024", 0));
        assert_eq!(split_partition("a#-1"), ("a#-1", 0));
    }

    #[test]
    fn bad_streams_are_refused() {
        assert!(PartitionedStream::new("jobs#2", 2).is_err());
        assert!(PartitionedStream::new("jobs", 0).is_err());
        assert!(PartitionedStream::new("jobs", MAX_PARTITIONS + 1).is_err());
        assert!(PartitionedStream::new("has space", 2).is_err());
        // The last partition's name must fit the limit too.
        let long = "x".repeat(crate::names::MAX_NAME_BYTES - 2);
        assert!(PartitionedStream::new(long.clone(), 10).is_ok());
        assert!(PartitionedStream::new(long, 11).is_err());
        // Nor a name that only looks like one.
        assert!(PartitionedStream::new("jobs#0", 2).is_err());
        assert!(PartitionedStream::new("jobs#07", 2).is_err());
        assert!(PartitionedStream::new("jobs#a", 2).is_ok());
    }

    #[test]
    fn keys_spread_and_stay() {
        let s = PartitionedStream::new("jobs", 8).unwrap();
        let mut seen = [0u32; 8];
        for n in 0..8000 {
            let key = format!("key-{n}");
            let p = s.partition_for_key(&key);
            assert_eq!(p, s.partition_for_key(&key));
            seen[p as usize] += 1;
        }
        // Every partition gets a fair share (1000 each on average).
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        // Known value: zlib.crc32(b"customer-42") in Python.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }
}
