//! The wire format: how messages become entry fields and back.
//!
//! An entry is a flat field map (see `docs/wire-format.md`):
//!
//! | field | meaning |
//! |---|---|
//! | `data` | the payload, a JSON object |
//! | `ts` | creation time, RFC 3339 UTC; kept through retries |
//! | `retry_count` | integer; absent means 0 |
//! | `mid` | the producer's message id |
//! | `error` | last error text (retries and DLQ) |
//! | `traceparent` | the sender's W3C trace context, when it had one |
//! | `replayed_from` | the dead-letter entry a replayed message came from |
//! | `replay_count` | how many times it was replayed from the DLQ; absent means 0 |
//!
//! Dead-letter entries add `origin_stream`, `origin_id`, `group`, `consumer`,
//! `reason`, `failed_at`, `deliveries`, and, for entries that did not follow
//! this format, a verbatim copy of every original field as `raw:<name>`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::backend::Fields;
use crate::message::{DeadLetter, MessageStatus, RawFields, StreamMessage};
use crate::observe::valid_traceparent;

/// Field names of the envelope.
pub mod field {
    /// The payload (JSON object).
    pub const DATA: &str = "data";
    /// Creation time.
    pub const TS: &str = "ts";
    /// Retry count.
    pub const RETRY_COUNT: &str = "retry_count";
    /// Producer message id.
    pub const MID: &str = "mid";
    /// Last error.
    pub const ERROR: &str = "error";
    /// The sender's W3C Trace Context `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
    /// Replays: the dead-letter entry id the message was last replayed from.
    pub const REPLAYED_FROM: &str = "replayed_from";
    /// Replays: how many times the message was replayed from the DLQ.
    pub const REPLAY_COUNT: &str = "replay_count";
    /// DLQ: source stream.
    pub const ORIGIN_STREAM: &str = "origin_stream";
    /// DLQ: source entry id.
    pub const ORIGIN_ID: &str = "origin_id";
    /// DLQ: group.
    pub const GROUP: &str = "group";
    /// DLQ: consumer.
    pub const CONSUMER: &str = "consumer";
    /// DLQ: reason.
    pub const REASON: &str = "reason";
    /// DLQ: when.
    pub const FAILED_AT: &str = "failed_at";
    /// DLQ: delivery count.
    pub const DELIVERIES: &str = "deliveries";
    /// DLQ: prefix of verbatim copies of a malformed entry's fields.
    pub const RAW_PREFIX: &str = "raw:";
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The current time, RFC 3339 UTC with milliseconds.
///
/// Formatted once per millisecond and thread: a busy sender asks many
/// times within one.
pub(crate) fn now_rfc3339() -> String {
    thread_local! {
        static LAST: RefCell<(u128, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        return rfc3339(now);
    };
    let ms = since_epoch.as_millis();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != ms || last.1.is_empty() {
            *last = (ms, rfc3339(now));
        }
        last.1.clone()
    })
}

/// A time as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// 64 random bits, from a per-thread generator seeded by the standard
/// library's randomly keyed hasher.
pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = RandomState::new().build_hasher();
            h.write_u64(now_ms());
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A new producer message id: unique per process run and send.
pub(crate) fn new_mid() -> String {
    static PROCESS: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PROCESS.get_or_init(|| format!("{:016x}-", random_u64()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut mid = String::with_capacity(prefix.len() + 20);
    mid.push_str(prefix);
    // Writing an integer into a `String` cannot fail.
    let _ = write!(mid, "{n}");
    mid
}

/// The name of a JSON value's type, for error messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn put(fields: &mut Fields, name: &'static str, value: impl Into<Bytes>) {
    fields.push((Bytes::from_static(name.as_bytes()), value.into()));
}

/// The fields of a new or retried message.
///
/// `data` is the payload already encoded as JSON. `retry_count` is written only
/// when it is not 0.
pub(crate) fn envelope_fields(
    data: Bytes,
    ts: &str,
    retry_count: u32,
    mid: Option<&str>,
    error: Option<&str>,
    traceparent: Option<&str>,
) -> Fields {
    let mut fields = Fields::with_capacity(6);
    put(&mut fields, field::DATA, data);
    put(&mut fields, field::TS, ts.to_owned());
    if retry_count > 0 {
        put(&mut fields, field::RETRY_COUNT, retry_count.to_string());
    }
    if let Some(mid) = mid {
        put(&mut fields, field::MID, mid.to_owned());
    }
    if let Some(error) = error {
        put(&mut fields, field::ERROR, error.to_owned());
    }
    if let Some(traceparent) = traceparent {
        put(&mut fields, field::TRACEPARENT, traceparent.to_owned());
    }
    fields
}

/// Appends a message's replay history (`replayed_from`, `replay_count`),
/// when it has one: retry and dead-letter copies keep it.
pub(crate) fn push_history(fields: &mut Fields, replayed_from: Option<&str>, replay_count: u32) {
    if let Some(from) = replayed_from {
        put(fields, field::REPLAYED_FROM, from.to_owned());
    }
    if replay_count > 0 {
        put(fields, field::REPLAY_COUNT, replay_count.to_string());
    }
}

/// The most levels of nesting a payload may have (the payload object is
/// level 1): readers decode up to this depth and refuse deeper JSON.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// How deeply a JSON value nests arrays and objects (a scalar is 0, `{}` is
/// 1). Walks without recursion, so any value can be measured.
pub(crate) fn depth(value: &Value) -> usize {
    fn nests(v: &Value) -> bool {
        matches!(v, Value::Array(_) | Value::Object(_))
    }
    // The common payload, a flat object, needs no walk.
    match value {
        Value::Object(map) if !map.values().any(nests) => return 1,
        Value::Array(items) if !items.iter().any(nests) => return 1,
        _ => {}
    }
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    if nests(value) {
        stack.push((value, 1));
    }
    while let Some((v, level)) = stack.pop() {
        deepest = deepest.max(level);
        match v {
            Value::Array(items) => {
                stack.extend(items.iter().filter(|c| nests(c)).map(|c| (c, level + 1)));
            }
            Value::Object(map) => {
                stack.extend(map.values().filter(|c| nests(c)).map(|c| (c, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The payload of a message as stored: the bytes it was read with when its
/// data has not been changed since (so numbers beyond 64 bits, key order and
/// spacing survive retries and dead-letter moves), else `data` encoded anew.
pub(crate) fn payload_of(msg: &StreamMessage) -> Bytes {
    if let Some(original) = &msg.payload {
        let unchanged = serde_json::from_slice::<Map<String, Value>>(original)
            .is_ok_and(|decoded| decoded == msg.data);
        if unchanged {
            return original.clone();
        }
    }
    // A map of JSON values serializes; a nesting too deep for the
    // serializer cannot come from a decoded message.
    Bytes::from(serde_json::to_vec(&msg.data).unwrap_or_else(|_| b"{}".to_vec()))
}

/// The fields of a dead-letter entry for `msg`.
pub(crate) fn dlq_fields(msg: &StreamMessage, dead: &DeadLetter) -> Fields {
    let mut fields = envelope_fields(
        payload_of(msg),
        &msg.timestamp,
        msg.retry_count,
        msg.mid.as_deref(),
        Some(msg.error.as_deref().unwrap_or(&dead.reason)),
        msg.traceparent.as_deref(),
    );
    push_history(&mut fields, msg.replayed_from.as_deref(), msg.replay_count);
    put(
        &mut fields,
        field::ORIGIN_STREAM,
        dead.origin_stream.clone(),
    );
    put(&mut fields, field::ORIGIN_ID, dead.origin_id.clone());
    if let Some(group) = &dead.group {
        put(&mut fields, field::GROUP, group.clone());
    }
    if let Some(consumer) = &dead.consumer {
        put(&mut fields, field::CONSUMER, consumer.clone());
    }
    put(&mut fields, field::REASON, dead.reason.clone());
    put(&mut fields, field::FAILED_AT, dead.failed_at.clone());
    if let Some(n) = dead.deliveries {
        put(&mut fields, field::DELIVERIES, n.to_string());
    }
    if let Some(raw) = &msg.raw {
        for (name, value) in raw.fields() {
            let mut prefixed = Vec::with_capacity(field::RAW_PREFIX.len() + name.len());
            prefixed.extend_from_slice(field::RAW_PREFIX.as_bytes());
            prefixed.extend_from_slice(name);
            fields.push((Bytes::from(prefixed), value.clone()));
        }
    }
    fields
}

fn text(v: &[u8]) -> Result<&str, std::str::Utf8Error> {
    std::str::from_utf8(v)
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

#[derive(Default)]
struct DeadLetterParts {
    origin_stream: Option<String>,
    origin_id: Option<String>,
    group: Option<String>,
    consumer: Option<String>,
    reason: Option<String>,
    failed_at: Option<String>,
    deliveries: Option<u64>,
}

/// Decodes an entry. Never panics; see [`StreamMessage::from_entry`].
pub(crate) fn decode(stream: &str, id: &str, fields: &[(Bytes, Bytes)]) -> StreamMessage {
    decode_owned(stream, id.to_owned(), fields.to_vec())
}

/// [`decode`], taking the entry apart: the buffers of `data`, `ts` and
/// `mid` become the message's payload and strings as they are, and the
/// fields are kept as `raw` without a copy when they must be.
pub(crate) fn decode_owned(stream: &str, id: String, fields: Fields) -> StreamMessage {
    let mut msg = StreamMessage::blank(stream, id);
    if fields
        .iter()
        .any(|(k, _)| k.as_ref() == field::DATA.as_bytes())
    {
        decode_envelope(&mut msg, fields);
    } else {
        decode_foreign(&mut msg, fields);
    }
    msg
}

/// Bytes known to be UTF-8 as a `String`, reusing their buffer when they
/// own it alone.
fn into_string(b: Bytes) -> String {
    String::from_utf8(Vec::from(b)).unwrap_or_else(|e| lossy(e.as_bytes()))
}

/// Where the envelope's plain text fields are, when they are read as they
/// are at the end.
#[derive(Default)]
struct Places {
    data: Option<usize>,
    ts: Option<usize>,
    mid: Option<usize>,
}

/// Whether a field name was seen before in `fields[..i]`. Entries have a
/// handful of fields, where a scan beats hashing.
fn seen_before(fields: &[(Bytes, Bytes)], i: usize) -> bool {
    const SCAN: usize = 16;
    let name = &fields[i].0;
    if i < SCAN {
        return fields[..i].iter().any(|(k, _)| k == name);
    }
    let earlier: HashSet<&[u8]> = fields[..i].iter().map(|(k, _)| k.as_ref()).collect();
    earlier.contains(name.as_ref())
}

fn decode_envelope(msg: &mut StreamMessage, fields: Fields) {
    let mut problems: Vec<String> = Vec::new();
    let mut dead = DeadLetterParts::default();
    let mut raw_copies = Fields::new();
    let mut extra = false;
    let mut places = Places::default();
    let string = |name: &str, v: &Bytes, problems: &mut Vec<String>| match text(v) {
        Ok(s) => Some(s.to_owned()),
        Err(_) => {
            problems.push(format!("`{name}` is not valid UTF-8"));
            Some(lossy(v))
        }
    };
    let utf8 = |name: &str, v: &Bytes, problems: &mut Vec<String>| {
        if text(v).is_err() {
            problems.push(format!("`{name}` is not valid UTF-8"));
        }
    };
    for (i, (k, v)) in fields.iter().enumerate() {
        // Verbatim copies of a malformed entry may repeat a name, as it did.
        let copy = k.starts_with(field::RAW_PREFIX.as_bytes());
        if !copy && seen_before(&fields, i) {
            problems.push(format!("field `{}` appears more than once", lossy(k)));
            continue;
        }
        match k.as_ref() {
            b"data" => match serde_json::from_slice::<Value>(v) {
                Ok(Value::Object(map)) => {
                    msg.data = map;
                    places.data = Some(i);
                }
                Ok(other) => problems.push(format!(
                    "`data` is a JSON {}, not an object",
                    json_type(&other)
                )),
                Err(e) => problems.push(format!("`data` is not valid JSON: {e}")),
            },
            b"ts" => {
                utf8("ts", v, &mut problems);
                places.ts = Some(i);
            }
            b"retry_count" => match text(v).ok().and_then(|s| s.parse::<u32>().ok()) {
                Some(n) => msg.retry_count = n,
                None => problems.push(format!(
                    "`retry_count` is not a non-negative integer: {:?}",
                    lossy(v)
                )),
            },
            b"mid" => {
                utf8("mid", v, &mut problems);
                places.mid = Some(i);
            }
            b"error" => msg.error = string("error", v, &mut problems),
            // Trace context is a hint: an invalid value is ignored, never a
            // reason to fail the message.
            b"traceparent" => {
                msg.traceparent = text(v)
                    .ok()
                    .filter(|s| valid_traceparent(s))
                    .map(str::to_owned);
            }
            b"replayed_from" => msg.replayed_from = string("replayed_from", v, &mut problems),
            b"replay_count" => match text(v).ok().and_then(|s| s.parse::<u32>().ok()) {
                Some(n) => msg.replay_count = n,
                None => problems.push(format!(
                    "`replay_count` is not a non-negative integer: {:?}",
                    lossy(v)
                )),
            },
            b"origin_stream" => dead.origin_stream = string("origin_stream", v, &mut problems),
            b"origin_id" => dead.origin_id = string("origin_id", v, &mut problems),
            b"group" => dead.group = string("group", v, &mut problems),
            b"consumer" => dead.consumer = string("consumer", v, &mut problems),
            b"reason" => dead.reason = string("reason", v, &mut problems),
            b"failed_at" => dead.failed_at = string("failed_at", v, &mut problems),
            b"deliveries" => dead.deliveries = text(v).ok().and_then(|s| s.parse().ok()),
            // Verbatim copies of another entry's fields: any bytes.
            name if name.starts_with(field::RAW_PREFIX.as_bytes()) => {
                raw_copies.push((k.slice(field::RAW_PREFIX.len()..), v.clone()));
            }
            name => {
                if text(name).is_err() {
                    problems.push(format!("field name {:?} is not valid UTF-8", lossy(k)));
                }
                extra = true;
            }
        }
    }
    if let Some(origin_stream) = dead.origin_stream {
        msg.dead_letter = Some(DeadLetter {
            origin_stream,
            origin_id: dead.origin_id.unwrap_or_default(),
            group: dead.group,
            consumer: dead.consumer,
            reason: dead.reason.unwrap_or_default(),
            failed_at: dead.failed_at.unwrap_or_default(),
            deliveries: dead.deliveries,
        });
    }
    if !problems.is_empty() {
        msg.status = MessageStatus::Failed;
        msg.error = Some(format!("malformed entry: {}", problems.join("; ")));
        msg.data = string_view(&fields).0;
        msg.raw = Some(RawFields(fields));
        return;
    }
    msg.status = if msg.dead_letter.is_some() {
        MessageStatus::Dlq
    } else if msg.retry_count > 0 {
        MessageStatus::Retry
    } else {
        MessageStatus::Pending
    };
    let keep_all = raw_copies.is_empty() && extra;
    if !raw_copies.is_empty() {
        msg.raw = Some(RawFields(raw_copies));
    }
    if keep_all {
        // Fields beyond the envelope: keep them so a move does not drop
        // them, and copy what the message shows.
        let at = |i: Option<usize>| i.map(|i| &fields[i].1);
        msg.payload = at(places.data).cloned();
        msg.timestamp = at(places.ts).map(|v| lossy(v)).unwrap_or_default();
        msg.mid = at(places.mid).map(|v| lossy(v));
        msg.raw = Some(RawFields(fields));
        return;
    }
    for (i, (_, v)) in fields.into_iter().enumerate() {
        let i = Some(i);
        if i == places.data {
            msg.payload = Some(v);
        } else if i == places.ts {
            msg.timestamp = into_string(v);
        } else if i == places.mid {
            msg.mid = Some(into_string(v));
        }
    }
}

/// Every field as a JSON string; reports whether the view lost anything.
fn string_view(fields: &[(Bytes, Bytes)]) -> (Map<String, Value>, Vec<String>) {
    let mut data = Map::new();
    let mut problems = Vec::new();
    for (k, v) in fields {
        let name = match text(k) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                problems.push(format!("field name {:?} is not valid UTF-8", lossy(k)));
                lossy(k)
            }
        };
        let value = match text(v) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                problems.push(format!("field `{name}` is not valid UTF-8"));
                lossy(v)
            }
        };
        if data.insert(name.clone(), Value::String(value)).is_some() {
            problems.push(format!("field `{name}` appears more than once"));
        }
    }
    (data, problems)
}

fn decode_foreign(msg: &mut StreamMessage, fields: Fields) {
    let (data, problems) = string_view(&fields);
    msg.data = data;
    if !problems.is_empty() {
        msg.status = MessageStatus::Failed;
        msg.error = Some(format!("malformed entry: {}", problems.join("; ")));
        msg.raw = Some(RawFields(fields));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn f(pairs: &[(&str, &[u8])]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    Bytes::copy_from_slice(v),
                )
            })
            .collect()
    }

    /// Asserts that `fields` decode as a malformed entry, with `needle` in
    /// the error and every field kept.
    fn assert_malformed(fields: &Fields, needle: &str) {
        let msg = decode("s", "1-1", fields);
        assert_eq!(msg.status, MessageStatus::Failed, "{fields:?}");
        let error = msg.error.as_deref().unwrap();
        assert!(error.contains(needle), "{error:?}");
        assert_eq!(msg.raw.as_ref().unwrap().fields(), &fields[..]);
    }

    #[test]
    fn replay_history_round_trips_and_is_checked() {
        let mut fields = envelope_fields(Bytes::from_static(b"{}"), "t", 0, Some("m1"), None, None);
        push_history(&mut fields, Some("9-0"), 2);
        let msg = decode("s", "5-1", &fields);
        assert_eq!(msg.replayed_from.as_deref(), Some("9-0"));
        assert_eq!(msg.replay_count, 2);
        assert_eq!(msg.status, MessageStatus::Pending);
        assert!(msg.raw.is_none(), "history fields are part of the envelope");
        let json = msg.to_json();
        assert_eq!(
            (
                json["replayed_from"].as_str(),
                json["replay_count"].as_u64()
            ),
            (Some("9-0"), Some(2))
        );

        let mut dead = msg;
        dead.id = "5-1".into();
        let provenance = DeadLetter {
            origin_stream: "s".into(),
            origin_id: "5-1".into(),
            group: None,
            consumer: None,
            reason: "r".into(),
            failed_at: "t".into(),
            deliveries: None,
        };
        let back = decode("dlq", "6-0", &dlq_fields(&dead, &provenance));
        assert_eq!(
            (back.replayed_from.as_deref(), back.replay_count),
            (Some("9-0"), 2)
        );

        let plain = decode(
            "s",
            "5-1",
            &envelope_fields(Bytes::from_static(b"{}"), "t", 0, None, None, None),
        );
        assert_eq!(
            (plain.replayed_from.as_deref(), plain.replay_count),
            (None, 0)
        );
        assert!(plain.to_json().get("replay_count").is_none());
        assert_malformed(
            &f(&[("data", b"{}"), ("replay_count", b"-1")]),
            "replay_count",
        );
    }

    #[test]
    fn envelope_round_trips() {
        let data = json!({"agent_id": "cline-1", "nested": {"a": [1, 2.5, null, true]}});
        let Value::Object(map) = data else { panic!() };
        let fields = envelope_fields(
            Bytes::from(serde_json::to_vec(&map).unwrap()),
            "2026-01-01T00:00:00.000Z",
            2,
            Some("m1"),
            Some("boom"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let msg = decode("s", "5-1", &fields);
        assert_eq!(msg.data, map);
        assert_eq!(msg.timestamp, "2026-01-01T00:00:00.000Z");
        assert_eq!(msg.retry_count, 2);
        assert_eq!(msg.status, MessageStatus::Retry);
        assert_eq!(msg.mid.as_deref(), Some("m1"));
        assert_eq!(msg.error.as_deref(), Some("boom"));
        assert_eq!(
            msg.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(msg.raw.is_none());
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [&b"00-nope"[..], b"\xff\xfe", b""] {
            let msg = decode("s", "1-1", &f(&[("data", b"{}"), ("traceparent", bad)]));
            assert_eq!(msg.status, MessageStatus::Pending, "{bad:?}");
            assert_eq!(msg.traceparent, None);
            assert!(msg.raw.is_none(), "not kept as an extra field either");
        }
    }

    #[test]
    fn retry_count_zero_is_not_written() {
        let fields = envelope_fields(Bytes::from_static(b"{}"), "t", 0, None, None, None);
        assert!(!fields.iter().any(|(k, _)| k.as_ref() == b"retry_count"));
    }

    #[test]
    fn foreign_entries_become_strings() {
        let msg = decode("s", "1700000000000-0", &f(&[("agent", b"py"), ("n", b"3")]));
        assert_eq!(msg.status, MessageStatus::Pending);
        assert_eq!(msg.data["agent"], "py");
        assert_eq!(msg.data["n"], "3");
        assert_eq!(
            msg.timestamp, "",
            "the manager fills it in from the backend"
        );
        assert!(msg.raw.is_none());
    }

    #[test]
    fn malformed_entries_fail_with_raw_fields() {
        for (fields, needle) in [
            (f(&[("data", b"not json")]), "not valid JSON"),
            (f(&[("data", b"[1,2]")]), "JSON array"),
            (f(&[("data", b"{}"), ("retry_count", b"-1")]), "retry_count"),
            (f(&[("data", b"{}"), ("ts", b"\xff\xfe")]), "UTF-8"),
            (f(&[("k", b"\xff")]), "UTF-8"),
            (f(&[("k", b"1"), ("k", b"2")]), "more than once"),
        ] {
            assert_malformed(&fields, needle);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let n = (seed % 5) as usize;
            let mut fields = Fields::new();
            for _ in 0..n {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = match seed % 4 {
                    0 => b"data".to_vec(),
                    1 => b"retry_count".to_vec(),
                    2 => b"ts".to_vec(),
                    _ => seed.to_le_bytes().to_vec(),
                };
                fields.push((Bytes::from(k), Bytes::from(seed.to_be_bytes().to_vec())));
            }
            let _ = decode("s", "x", &fields);
        }
        let _ = decode("s", "", &[]);
    }

    #[test]
    fn dlq_entry_round_trips_provenance_and_raw() {
        let bad = f(&[("data", b"oops"), ("x", b"\xff")]);
        let msg = decode("src", "9-9", &bad);
        let dead = DeadLetter {
            origin_stream: "src".into(),
            origin_id: "9-9".into(),
            group: Some("g".into()),
            consumer: Some("c".into()),
            reason: "undecodable".into(),
            failed_at: "2026-01-01T00:00:00.000Z".into(),
            deliveries: Some(2),
        };
        let fields = dlq_fields(&msg, &dead);
        let back = decode("xnai:dlq", "10-0", &fields);
        assert_eq!(back.status, MessageStatus::Dlq);
        assert_eq!(back.dead_letter.as_ref(), Some(&dead));
        assert_eq!(back.raw.unwrap().fields(), &bad[..]);
    }

    #[test]
    fn repeated_fields_and_bad_names_fail_with_raw_fields() {
        for (fields, needle) in [
            (
                f(&[("data", b"{\"a\":1}"), ("data", b"{\"a\":2}")]),
                "field `data` appears more than once",
            ),
            (
                f(&[("data", b"{}"), ("ts", b"a"), ("ts", b"b")]),
                "`ts` appears",
            ),
            (
                f(&[("data", b"{}"), ("x", b"1"), ("x", b"2")]),
                "`x` appears",
            ),
        ] {
            assert_malformed(&fields, needle);
        }
        let bad_name = vec![
            (Bytes::from_static(b"data"), Bytes::from_static(b"{}")),
            (Bytes::from_static(b"\xff\xfe"), Bytes::from_static(b"v")),
        ];
        let msg = decode("s", "1-1", &bad_name);
        assert_eq!(msg.status, MessageStatus::Failed);
        assert!(msg.error.as_deref().unwrap().contains("field name"));
        assert_eq!(msg.raw.unwrap().fields(), &bad_name[..]);
        // A verbatim copy in a dead letter may have any name.
        let copy = vec![
            (Bytes::from_static(b"data"), Bytes::from_static(b"{}")),
            (
                Bytes::from_static(b"origin_stream"),
                Bytes::from_static(b"s"),
            ),
            (Bytes::from_static(b"raw:\xff"), Bytes::from_static(b"v")),
        ];
        let msg = decode("dlq", "2-1", &copy);
        assert_eq!(msg.status, MessageStatus::Dlq);
        assert_eq!(msg.raw.unwrap().fields()[0].0.as_ref(), b"\xff");
    }

    #[test]
    fn copies_keep_the_payload_bytes_unless_data_changed() {
        let stored = Bytes::from_static(b"{\"big\":18446744073709551616,\"b\": 1}");
        let fields = vec![(Bytes::from_static(b"data"), stored.clone())];
        let mut msg = decode("s", "1-1", &fields);
        assert_eq!(msg.status, MessageStatus::Pending);
        assert_eq!(payload_of(&msg), stored);
        msg.data.insert("c".into(), json!(2));
        let changed = payload_of(&msg);
        assert_ne!(changed, stored);
        assert_eq!(
            serde_json::from_slice::<Value>(&changed).unwrap()["c"],
            json!(2)
        );
    }

    #[test]
    fn depth_counts_nesting_without_recursion() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
        // Very deep values are measured without overflowing the stack.
        let mut deep = json!(0);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 100_000);
        std::mem::forget(deep);
        // What the limit lets through, every reader decodes.
        let at_limit = format!(
            "{{\"a\":{}0{}}}",
            "[".repeat(MAX_PAYLOAD_DEPTH - 1),
            "]".repeat(MAX_PAYLOAD_DEPTH - 1)
        );
        let v: Value = serde_json::from_str(&at_limit).unwrap();
        assert_eq!(depth(&v), MAX_PAYLOAD_DEPTH);
        let over = format!(
            "{{\"a\":{}0{}}}",
            "[".repeat(MAX_PAYLOAD_DEPTH),
            "]".repeat(MAX_PAYLOAD_DEPTH)
        );
        assert!(serde_json::from_str::<Value>(&over).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A finite number that survives JSON text unchanged: integers of
        /// every width, and floats whose shortest text parses back to them
        /// (serde_json's default float parser may be one ulp off otherwise).
        fn number() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite, exact through JSON text", |f| {
                        f.is_finite()
                            && serde_json::from_str::<f64>(&serde_json::to_string(f).unwrap())
                                .is_ok_and(|back| back == *f)
                    })
                    .prop_map(Value::from),
            ]
        }

        /// Strings of any Unicode, control characters, quotes and
        /// backslashes included.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[\"\\\\/{}:\\[\\]\\x00-\\x1f\u{7f}\u{2028}\u{fffd}\u{1f600}a]{0,12}",
            ]
        }

        /// Any JSON value, nested.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                number(),
                text().prop_map(Value::String),
            ];
            leaf.prop_recursive(8, 96, 8, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    proptest::collection::btree_map(text(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Any JSON object: a payload.
        fn object() -> impl Strategy<Value = Map<String, Value>> {
            proptest::collection::btree_map(text(), json(), 0..8)
                .prop_map(|m| m.into_iter().collect())
        }

        /// Field names a decoder treats specially, and a few others, so
        /// generated entries often repeat a name or mix the envelope with
        /// foreign fields.
        const NAMES: [&[u8]; 14] = [
            b"data",
            b"ts",
            b"retry_count",
            b"mid",
            b"error",
            b"traceparent",
            b"replayed_from",
            b"replay_count",
            b"origin_stream",
            b"deliveries",
            b"raw:data",
            b"raw:\xff",
            b"agent",
            b"",
        ];

        fn name() -> impl Strategy<Value = Bytes> {
            prop_oneof![
                3 => proptest::sample::select(&NAMES[..]).prop_map(Bytes::from_static),
                1 => proptest::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
            ]
        }

        /// Values: JSON objects and other JSON, numbers as text, and any bytes.
        fn value() -> impl Strategy<Value = Bytes> {
            prop_oneof![
                object().prop_map(|m| Bytes::from(serde_json::to_vec(&m).unwrap())),
                json().prop_map(|v| Bytes::from(serde_json::to_vec(&v).unwrap())),
                any::<u32>().prop_map(|n| Bytes::from(n.to_string())),
                proptest::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from),
            ]
        }

        /// Any number of fields, names often repeated.
        fn entry() -> impl Strategy<Value = Fields> {
            proptest::collection::vec((name(), value()), 0..10)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any JSON object goes through the envelope and comes back
            /// equal, with its stored bytes, `ts`, `mid` and retry count.
            #[test]
            fn any_object_round_trips(
                data in object(),
                ts in text(),
                mid in text(),
                retry_count in any::<u32>(),
            ) {
                let bytes = Bytes::from(serde_json::to_vec(&data).unwrap());
                let fields = envelope_fields(bytes.clone(), &ts, retry_count, Some(&mid), None, None);
                let msg = decode("s", "1-0", &fields);
                prop_assert!(!msg.is_malformed(), "{:?}", msg.error);
                prop_assert_eq!(&msg.data, &data);
                prop_assert_eq!(msg.payload.as_ref(), Some(&bytes));
                prop_assert_eq!(&msg.timestamp, &ts);
                prop_assert_eq!(msg.mid.as_deref(), Some(mid.as_str()));
                prop_assert_eq!(msg.retry_count, retry_count);
                prop_assert!(msg.raw.is_none());
                // A copy carries the same bytes.
                prop_assert_eq!(payload_of(&msg), bytes);
            }

            /// Decoding any field map never panics, and gives either a
            /// message that follows the format or a malformed message that
            /// keeps every stored field, byte for byte.
            #[test]
            fn any_fields_decode_to_a_message_or_a_malformed_one(fields in entry()) {
                let msg = decode("s", "7-1", &fields);
                prop_assert_eq!(&msg.id, "7-1");
                prop_assert_eq!(&msg.stream, "s");
                if msg.status == MessageStatus::Failed {
                    prop_assert!(msg.is_malformed());
                    let error = msg.error.as_deref().unwrap_or_default();
                    prop_assert!(error.starts_with("malformed entry: "), "{}", error);
                    prop_assert_eq!(msg.raw.as_ref().unwrap().fields(), &fields[..]);
                    return Ok(());
                }
                // Well formed: no name twice (copies aside), every name
                // UTF-8, and `data`, when there is one, a JSON object.
                let plain: Vec<&Bytes> = fields
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| !k.starts_with(b"raw:"))
                    .collect();
                let unique: HashSet<&Bytes> = plain.iter().copied().collect();
                prop_assert_eq!(unique.len(), plain.len(), "a repeated field was accepted");
                prop_assert!(plain.iter().all(|k| std::str::from_utf8(k).is_ok()));
                match fields.iter().find(|(k, _)| k.as_ref() == b"data") {
                    Some((_, v)) => {
                        let parsed: Map<String, Value> = serde_json::from_slice(v).unwrap();
                        prop_assert_eq!(&msg.data, &parsed);
                        prop_assert_eq!(msg.payload.as_ref(), Some(v));
                    }
                    None => {
                        // Another producer's entry: every field as a string.
                        prop_assert_eq!(msg.data.len(), fields.len());
                        for (k, v) in &fields {
                            let k = std::str::from_utf8(k).unwrap();
                            let v = std::str::from_utf8(v).unwrap();
                            prop_assert_eq!(msg.data.get(k), Some(&Value::from(v)));
                        }
                    }
                }
            }

            /// Any bytes as `data`: a message exactly when they are a JSON
            /// object, else a malformed one with its fields kept.
            #[test]
            fn any_data_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
                let fields = vec![
                    (Bytes::from_static(b"data"), Bytes::from(data.clone())),
                    (Bytes::from_static(b"ts"), Bytes::from_static(b"t")),
                ];
                let msg = decode("s", "1-0", &fields);
                let object = serde_json::from_slice::<Map<String, Value>>(&data).is_ok();
                prop_assert_eq!(msg.is_malformed(), !object);
                if !object {
                    prop_assert_eq!(msg.raw.as_ref().unwrap().fields(), &fields[..]);
                }
            }
        }
    }

    #[test]
    fn mids_are_unique() {
        let a = new_mid();
        let b = new_mid();
        assert_ne!(a, b);
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)),
            "2023-11-14T22:13:20.000Z"
        );
    }
}
