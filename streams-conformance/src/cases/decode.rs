//! Entries written by others: foreign producers and malformed data.

use std::time::Duration;

use bytes::Bytes;
use streams_core::backend::Add;
use streams_core::{Fields, MessageStatus, StreamMessage};

use crate::support::{TestContext, entries, field, fields, ids, pending_all, read_n};

async fn add_raw(ctx: &TestContext, stream: &str, f: Fields) -> String {
    ctx.backend()
        .add(Add::new(ctx.key(stream), f))
        .await
        .unwrap()
        .into_string()
}

/// Malformed entries, each with what is wrong with it.
fn malformed() -> Vec<(&'static str, Fields)> {
    let deep = format!("{{\"a\":{}0{}}}", "[".repeat(200), "]".repeat(200));
    vec![
        (
            "data twice",
            fields(&[("data", b"{\"k\":1}"), ("data", b"{\"k\":2}")]),
        ),
        (
            "non-UTF-8 field name",
            vec![
                (
                    Bytes::from_static(b"data"),
                    Bytes::from_static(b"{\"k\":1}"),
                ),
                (Bytes::from_static(b"\xff\xfe"), Bytes::from_static(b"x")),
            ],
        ),
        (
            "data nested too deep",
            vec![(Bytes::from_static(b"data"), Bytes::from(deep))],
        ),
        (
            "a foreign field twice",
            fields(&[("agent", b"py"), ("agent", b"js")]),
        ),
        ("data not JSON", fields(&[("data", b"not json {")])),
        ("data a JSON array", fields(&[("data", b"[1,2,3]")])),
        (
            "bad retry_count",
            fields(&[("data", b"{\"k\":1}"), ("retry_count", b"many")]),
        ),
        (
            "non-UTF-8 ts",
            fields(&[("data", b"{\"k\":1}"), ("ts", b"\xff\xfe\xfd")]),
        ),
        (
            "non-UTF-8 foreign value",
            fields(&[("agent", b"py"), ("blob", b"\x80\x81binary")]),
        ),
    ]
}

/// An entry written by another producer (no `data` field) is delivered with
/// each field as a JSON string in `data`, status pending, no `mid`, and a
/// timestamp taken from its id; it can be acknowledged as usual.
pub async fn foreign_entries_decode_as_strings(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let id = add_raw(
        ctx,
        "s",
        fields(&[
            ("agent_id", b"py-1"),
            ("count", b"3"),
            ("json", b"{\"a\":1}"),
        ]),
    )
    .await;
    let msg = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(msg.id, id);
    assert_eq!(msg.stream, "s");
    assert_eq!(
        serde_json::Value::Object(msg.data.clone()),
        serde_json::json!({"agent_id": "py-1", "count": "3", "json": "{\"a\":1}"})
    );
    assert_eq!(msg.status, MessageStatus::Pending);
    assert_eq!(msg.error, None);
    assert_eq!(msg.retry_count, 0);
    assert_eq!(msg.mid, None);
    // Without `ts`, the time the backend stored the entry stands in.
    let stored = crate::support::rfc3339(&msg.timestamp);
    let age = std::time::SystemTime::now()
        .duration_since(stored)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(60),
        "timestamp {} is {age:?} old",
        msg.timestamp
    );
    assert!(m.acknowledge(&msg, "g").await.unwrap());
    assert_eq!(m.get_stats().await.unwrap().malformed_messages, 0);
}

/// Malformed entries (data not JSON, a JSON array, twice, nested deeper than
/// a decoder goes; a bad retry count; a repeated field; non-UTF-8 values or
/// field names) are delivered, not dropped and not fatal: each arrives with
/// status failed, an error, and its stored fields byte for byte; the
/// well-formed entry after them arrives intact.
pub async fn malformed_entries_arrive_failed(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let cases = malformed();
    let mut written = Vec::new();
    for (_, f) in &cases {
        written.push(add_raw(ctx, "s", f.clone()).await);
    }
    let good = m
        .send_message("s", serde_json::json!({"fine": true}), None)
        .await
        .unwrap();
    let got = read_n(&m, "g", cases.len() + 1, Duration::from_secs(5)).await;
    let mut expected = written.clone();
    expected.push(good);
    assert_eq!(ids(&got), expected);
    for ((what, f), msg) in cases.iter().zip(&got) {
        assert_eq!(msg.status, MessageStatus::Failed, "{what}: {msg:?}");
        assert!(msg.error.is_some(), "{what}: no error");
        assert!(msg.is_malformed(), "{what}");
        assert_eq!(msg.raw.as_ref().unwrap().fields(), &f[..], "{what}");
        assert!(msg.delivery.is_some(), "{what}");
    }
    let last = got.last().unwrap();
    assert_eq!(last.status, MessageStatus::Pending);
    assert_eq!(last.data["fine"], true);
    let stats = m.get_stats().await.unwrap();
    assert_eq!(stats.malformed_messages, cases.len() as u64);
    assert_eq!(stats.messages_read, cases.len() as u64 + 1);
    assert_eq!(
        m.acknowledge_many(&got, "g").await.unwrap(),
        got.len() as u64
    );
}

/// A malformed entry can be dead-lettered through its group: the original
/// is acknowledged and the dead-letter entry keeps every stored field,
/// byte for byte, as `raw:<name>`, with its provenance.
pub async fn malformed_entry_dead_letters_with_raw_fields(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let cases = malformed();
    for (_, f) in &cases {
        add_raw(ctx, "s", f.clone()).await;
    }
    let got = read_n(&m, "g", cases.len(), Duration::from_secs(5)).await;
    for msg in &got {
        m.send_to_dlq(msg, "undecodable", Some("g")).await.unwrap();
    }
    let backend = ctx.backend();
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
    let dlq = entries(&backend, &m.keys().dlq("s")).await;
    assert_eq!(dlq.len(), cases.len());
    for (((what, f), msg), entry) in cases.iter().zip(&got).zip(&dlq) {
        let raw: Fields = entry
            .fields
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(b"raw:")
                    .map(|name| (Bytes::copy_from_slice(name), v.clone()))
            })
            .collect();
        assert_eq!(raw, *f, "{what}: raw copies in the dead-letter entry");
        let dead = StreamMessage::from_entry("xnai:dlq", entry.id.as_str(), &entry.fields);
        assert_eq!(dead.raw.as_ref().unwrap().fields(), &f[..], "{what}");
        let prov = dead.dead_letter.expect("provenance");
        assert_eq!(prov.origin_id, msg.id, "{what}");
        assert_eq!(prov.origin_stream, "s");
        assert_eq!(prov.reason, "undecodable");
        assert_eq!(prov.group.as_deref(), Some("g"));
    }
}

/// A malformed entry cannot be retried: `retry_message` fails with
/// `StreamError::Decode`, nothing is scheduled, and the entry stays pending,
/// so it can still be dead-lettered with its raw fields.
pub async fn malformed_entry_is_not_retried(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let raw = fields(&[("data", b"not json {")]);
    let id = add_raw(ctx, "s", raw.clone()).await;
    let msg = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(msg.is_malformed());
    crate::assert_err!(
        m.retry_message(&msg).await,
        streams_core::StreamError::Decode { .. }
    );
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, id);
    let stats = m.get_stats().await.unwrap();
    assert_eq!(stats.messages_retried, 0);
    assert_eq!(
        ctx.backend()
            .schedule_len(&m.keys().retry_schedule("s", "g"))
            .await
            .unwrap(),
        0
    );
    m.send_to_dlq(&msg, "undecodable", Some("g")).await.unwrap();
    let dead = m.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].raw.as_ref().unwrap().fields(), &raw[..]);
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s"), "g")
            .await
            .is_empty()
    );
}

/// A W3C `traceparent` in an entry is read into the message and kept,
/// unchanged, by its retry copy and its dead-letter entry; an invalid one
/// is ignored, without making the message malformed and without being
/// copied. A send with no OpenTelemetry context (no `otel` feature, or no
/// trace) writes none.
pub async fn traceparent_is_kept_through_copies(ctx: &TestContext) {
    const TRACE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let m = ctx.manager_with(
        ctx.config("a")
            .with_dlq(streams_core::DlqConfig::default().with_retry_backoff(Duration::ZERO)),
    );
    ctx.create_group(&m, "g", &["s"]).await;
    add_raw(
        ctx,
        "s",
        fields(&[("data", b"{\"k\":1}"), ("traceparent", TRACE)]),
    )
    .await;
    add_raw(
        ctx,
        "s",
        fields(&[("data", b"{\"k\":2}"), ("traceparent", b"00-oops")]),
    )
    .await;
    let sent = m
        .send_message("s", serde_json::json!({"k": 3}), None)
        .await
        .unwrap();
    let got = read_n(&m, "g", 3, Duration::from_secs(5)).await;
    let trace = std::str::from_utf8(TRACE).unwrap();
    assert_eq!(got[0].traceparent.as_deref(), Some(trace));
    assert_eq!(
        got[1].traceparent, None,
        "an invalid traceparent is ignored"
    );
    assert_eq!(got[1].status, MessageStatus::Pending);
    assert!(!got[1].is_malformed());
    assert_eq!(got[2].id, sent);
    assert_eq!(got[2].traceparent, None);
    let backend = ctx.backend();
    let stored = entries(&backend, &ctx.key("s")).await;
    assert_eq!(field(&stored[2].fields, "traceparent"), None);

    // Both copies of the traced message keep it; the invalid one is dropped.
    assert!(m.retry_message(&got[0]).await.unwrap());
    assert!(m.retry_message(&got[1]).await.unwrap());
    m.promote_due_retries(Some("g")).await.unwrap();
    let ready = entries(&backend, &m.keys().retry_ready("s", "g")).await;
    assert_eq!(ready.len(), 2);
    let traces: Vec<_> = ready
        .iter()
        .map(|e| field(&e.fields, "traceparent"))
        .collect();
    assert!(
        traces.contains(&Some(TRACE)) && traces.contains(&None),
        "{traces:?}"
    );
    let mut copies = read_n(&m, "g", 2, Duration::from_secs(5)).await;
    copies.sort_by_key(|c| c.data["k"].as_i64());
    assert_eq!(copies[0].retry_count, 1);
    assert_eq!(copies[0].traceparent.as_deref(), Some(trace));
    assert_eq!(copies[1].traceparent, None);
    m.send_to_dlq(&copies[0], "gave up", Some("g"))
        .await
        .unwrap();
    let dead = m.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].traceparent.as_deref(), Some(trace));
    let dlq = entries(&backend, &m.keys().dlq("s")).await;
    assert_eq!(field(&dlq[0].fields, "traceparent"), Some(TRACE));
    assert_eq!(
        m.acknowledge_many(&[got[2].clone(), copies[1].clone()], "g")
            .await
            .unwrap(),
        2
    );
}

/// Entries another client wrote straight to the stream, each hostile in
/// its own way: `data` that is not UTF-8 (bare bytes, and inside a JSON
/// string), JSON cut short, a field repeated, a 10 MB body, JSON nested
/// 100 000 levels deep. The consume runner dead-letters each one, never
/// calling the handler with it, and the dead-letter entry keeps the stored
/// fields byte for byte; the runner goes on and handles the message sent
/// after them.
pub async fn hostile_entries_reach_the_dlq_and_consume_goes_on(ctx: &TestContext) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};
    use streams_core::StreamManagerExt;
    use streams_core::runner::{CancellationToken, ConsumeOptions, Job};

    let m = ctx.manager("w");
    ctx.create_group(&m, "g", &["s"]).await;
    let mut big = b"{\"blob\":\"".to_vec();
    big.resize(10 * 1024 * 1024, b'x');
    let mut deep = b"{\"a\":".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    let hostile: Vec<(&str, Fields)> = vec![
        (
            "data not UTF-8",
            fields(&[
                ("data", b"\xff\xfe\x00{\"k\":1}"),
                ("ts", b"2026-01-01T00:00:00.000Z"),
            ]),
        ),
        (
            "a JSON string not UTF-8",
            fields(&[("data", b"{\"k\":\"\xc3\x28\xa0\xa1\"}")]),
        ),
        (
            "JSON cut short",
            fields(&[("data", b"{\"k\":[1,2,{\"n\":")]),
        ),
        (
            "fields repeated",
            fields(&[
                ("data", b"{\"k\":1}"),
                ("mid", b"m-1"),
                ("data", b"{\"k\":2}"),
                ("mid", b"m-2"),
            ]),
        ),
        (
            "a 10 MB body",
            vec![(Bytes::from_static(b"data"), Bytes::from(big))],
        ),
        (
            "JSON nested 100 000 levels",
            vec![(Bytes::from_static(b"data"), Bytes::from(deep))],
        ),
    ];
    let mut written = Vec::new();
    for (_, f) in &hostile {
        written.push(add_raw(ctx, "s", f.clone()).await);
    }
    let good = m
        .send_message("s", json!({"after": "the hostile ones"}), None)
        .await
        .unwrap();

    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    {
        let (done, stop) = (Arc::clone(&done), stop.clone());
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while done.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.cancel();
        });
    }
    let summary = m
        .consume("g", {
            let (handled, done) = (Arc::clone(&handled), Arc::clone(&done));
            move |job: Job<Value>| {
                let (handled, done) = (Arc::clone(&handled), Arc::clone(&done));
                async move {
                    handled.lock().unwrap().push(job.id().to_owned());
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }
        })
        .options(
            ConsumeOptions::default()
                .concurrency(2)
                .poll(Duration::from_millis(50))
                .grace(Duration::from_secs(20)),
        )
        .shutdown_on(stop)
        .await
        .unwrap();

    assert_eq!(
        *handled.lock().unwrap(),
        vec![good],
        "only the good message reaches the handler"
    );
    assert_eq!(
        (
            summary.processed,
            summary.acked,
            summary.dead_lettered,
            summary.errors
        ),
        (1, 1, hostile.len() as u64, 0),
        "{summary}"
    );
    let backend = ctx.backend();
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
    let dlq = entries(&backend, &m.keys().dlq("s")).await;
    assert_eq!(dlq.len(), hostile.len());
    for (what, f) in &hostile {
        let i = hostile.iter().position(|(w, _)| w == what).unwrap();
        let entry = dlq
            .iter()
            .find(|e| field(&e.fields, "origin_id") == Some(written[i].as_bytes()))
            .unwrap_or_else(|| panic!("{what}: no dead-letter entry"));
        let raw: Fields = entry
            .fields
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(b"raw:")
                    .map(|name| (Bytes::copy_from_slice(name), v.clone()))
            })
            .collect();
        assert!(
            raw == *f,
            "{what}: the raw fields differ from the stored ones"
        );
        let dead = StreamMessage::from_entry("xnai:dlq", entry.id.as_str(), &entry.fields);
        let reason = dead.dead_letter.expect("provenance").reason;
        assert!(reason.starts_with("malformed entry"), "{what}: {reason}");
    }
}
