//! The message every workload sends: about 150 bytes in 5 fields, the same
//! content for the raw clients (5 stream fields) and for the project (a JSON
//! object of 5 members in the `data` field of its envelope).
//!
//! Field `t` carries the send time in microseconds since [`origin`], for the
//! latency runs; throughput runs leave it 0.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use streams_core::Fields;

/// Names of the 5 fields.
pub const NAMES: [&str; 5] = ["agent_id", "action", "task_id", "t", "body"];

const AGENT: &str = "agent-0042";
const ACTION: &str = "task_complete";
/// Pads the message to about 150 bytes.
const BODY: &str =
    "tool output: 42 files indexed, 3 warnings, cache warm, next step: summarise the diff";

/// The process-wide origin of send times.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Microseconds since [`origin`].
pub fn now_us() -> u64 {
    u64::try_from(origin().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The task id of message `i`.
pub fn task_id(i: u64) -> String {
    format!("R003-{i:07}")
}

/// Message `i` as the project sends it: a JSON object of 5 members.
pub fn json(i: u64, t: u64) -> Value {
    let mut map = Map::new();
    map.insert(NAMES[0].to_owned(), Value::from(AGENT));
    map.insert(NAMES[1].to_owned(), Value::from(ACTION));
    map.insert(NAMES[2].to_owned(), Value::from(task_id(i)));
    map.insert(NAMES[3].to_owned(), Value::from(t));
    map.insert(NAMES[4].to_owned(), Value::from(BODY));
    Value::Object(map)
}

/// Messages `from..from + n`, built before a clock starts.
pub fn json_chunk(from: u64, n: usize) -> Vec<Value> {
    (from..from + n as u64).map(|i| json(i, 0)).collect()
}

/// Message `i` as the raw clients send it: 5 stream fields.
pub fn raw(i: u64, t: u64) -> [(&'static str, String); 5] {
    [
        (NAMES[0], AGENT.to_owned()),
        (NAMES[1], ACTION.to_owned()),
        (NAMES[2], task_id(i)),
        (NAMES[3], t.to_string()),
        (NAMES[4], BODY.to_owned()),
    ]
}

/// Message `i` as backend fields, for the rows that call a backend directly.
pub fn fields(i: u64) -> Fields {
    raw(i, 0)
        .into_iter()
        .map(|(k, v)| (Bytes::from_static(k.as_bytes()), Bytes::from(v)))
        .collect()
}

/// Bytes of content of one raw message (names and values).
pub fn raw_bytes() -> usize {
    raw(0, now_us())
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

/// Bytes of one message's JSON payload.
pub fn json_bytes() -> usize {
    serde_json::to_vec(&json(0, now_us())).map_or(0, |v| v.len())
}

/// The part of a payload the latency runs read.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Stamp {
    /// Send time, microseconds since [`origin`].
    pub t: u64,
}

/// The send time in a decoded payload, if it has one.
pub fn stamp_of(data: &Map<String, Value>) -> Option<u64> {
    data.get("t").and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_150_bytes_in_5_fields() {
        let raw = raw_bytes();
        assert!((145..=155).contains(&raw), "{raw}");
        let encoded = json_bytes();
        assert!((160..=190).contains(&encoded), "{encoded}");
        assert_eq!(fields(1).len(), 5);
        let v = json(3, 77);
        assert_eq!(stamp_of(v.as_object().unwrap()), Some(77));
    }
}
