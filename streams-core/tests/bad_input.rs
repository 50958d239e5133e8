//! Bad input through the manager, on the memory backend: any JSON object
//! round-trips through a send and a read, the payload limit holds to the
//! byte, and hostile stream names are refused with a typed error or reach
//! keys of their own.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use streams_core::backend::RangeQuery;
use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamBackend, StreamError};
use streams_memory::MemoryBackend;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn manager(config: ManagerConfig) -> Manager<MemoryBackend> {
    Manager::new(MemoryBackend::new(), config.with_consumer_id("c")).unwrap()
}

/// Integers, and floats whose shortest text parses back to them exactly.
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

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\{}:\\x00-\\x1f\u{7f}\u{2028}\u{1f600}é]{0,10}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(text(), json(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// Encoded size of a payload, as the manager measures it.
fn size(data: &Map<String, Value>) -> usize {
    serde_json::to_vec(data).unwrap().len()
}

/// `data` with a `pad` string added so that it encodes to exactly `bytes`,
/// if it can (each ASCII letter adds one byte).
fn padded(data: &Map<String, Value>, bytes: usize) -> Option<Map<String, Value>> {
    let mut out = data.clone();
    out.insert("pad".into(), json!(""));
    let fill = bytes.checked_sub(size(&out))?;
    out.insert("pad".into(), Value::String("x".repeat(fill)));
    assert_eq!(size(&out), bytes);
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any JSON object sent through a manager is read back equal, with a
    /// `ts` and a `mid`, and stored as the bytes it was encoded to.
    #[test]
    fn any_object_round_trips_through_a_manager(data in object()) {
        runtime().block_on(async {
            let m = manager(ManagerConfig::default());
            m.create_consumer_group(&ConsumerGroupConfig::new("g", ["s"])).await.unwrap();
            let id = m.send_message("s", Value::Object(data.clone()), None).await.unwrap();
            let got = m
                .read_messages("g", Some(10), Some(Duration::ZERO))
                .await
                .unwrap();
            prop_assert_eq!(got.len(), 1);
            let msg = &got[0];
            prop_assert_eq!(&msg.id, &id);
            prop_assert!(!msg.is_malformed(), "{:?}", msg.error);
            prop_assert_eq!(&msg.data, &data);
            prop_assert!(!msg.timestamp.is_empty());
            prop_assert!(msg.mid.as_deref().is_some_and(|mid| !mid.is_empty()));
            let stored = m
                .backend()
                .range(RangeQuery::new(&m.keys().stream("s"), 10))
                .await
                .unwrap();
            let stored_data = stored[0]
                .fields
                .iter()
                .find(|(k, _)| k.as_ref() == b"data")
                .map(|(_, v)| v.to_vec());
            prop_assert_eq!(stored_data, Some(serde_json::to_vec(&data).unwrap()));
            Ok(())
        })?;
    }

    /// A payload that encodes to exactly `max_message_bytes` is sent; one
    /// byte more is refused with `PayloadTooLarge` naming both sizes, and
    /// nothing of a batch holding it is written.
    #[test]
    fn payload_limit_holds_to_the_byte(data in object(), slack in 0usize..2048) {
        let limit = size(&data) + 12 + slack;
        let exact = padded(&data, limit).unwrap();
        let over = padded(&data, limit + 1).unwrap();
        runtime().block_on(async {
            let m = manager(ManagerConfig::default().with_max_message_bytes(limit));
            let key = m.keys().stream("s");
            m.send_message("s", Value::Object(exact.clone()), None).await.unwrap();
            match m.send_message("s", Value::Object(over.clone()), None).await {
                Err(StreamError::PayloadTooLarge { size, limit: l }) => {
                    prop_assert_eq!((size, l), (limit + 1, limit));
                }
                other => prop_assert!(false, "one byte over the limit: {:?}", other),
            }
            let batch = m
                .send_batch("s", vec![Value::Object(exact.clone()), Value::Object(over)], None)
                .await;
            prop_assert!(
                matches!(batch, Err(StreamError::PayloadTooLarge { .. })),
                "{:?}",
                batch
            );
            prop_assert_eq!(m.backend().len(&key).await.unwrap(), 1);
            m.send_batch("s", vec![Value::Object(exact)], None).await.unwrap();
            prop_assert_eq!(m.backend().len(&key).await.unwrap(), 2);
            Ok(())
        })?;
    }

    /// Hostile stream names (any string: braces, colons, control
    /// characters, Unicode, empty, too long) are refused with
    /// `InvalidName`, or accepted, and then every accepted name holds
    /// exactly the messages sent to it.
    #[test]
    fn hostile_stream_names_are_refused_or_kept_apart(
        names in proptest::collection::vec(
            prop_oneof![
                any::<String>(),
                "[ab:{}\\- \t\\x00-\\x08\u{85}\u{a0}\u{2028}é\u{1f600}]{0,5}",
                (510usize..516).prop_map(|n| "a".repeat(n)),
                Just("xnai:groups".to_owned()),
                Just("xnai:dlq".to_owned()),
            ],
            1..10,
        ),
        namespaced in any::<bool>(),
    ) {
        runtime().block_on(async {
            let mut config = ManagerConfig::default();
            if namespaced {
                config = config.with_namespace("t1");
            }
            let m = manager(config);
            let mut sent: HashMap<String, usize> = HashMap::new();
            for name in &names {
                match m.send_message(name, json!({ "to": name }), None).await {
                    Ok(_) => *sent.entry(name.clone()).or_default() += 1,
                    Err(StreamError::InvalidName { kind: "stream", name: refused, .. }) => {
                        prop_assert_eq!(&refused, name);
                    }
                    Err(other) => prop_assert!(false, "{:?}: {:?}", name, other),
                }
            }
            for (name, n) in &sent {
                let stored = m
                    .backend()
                    .range(RangeQuery::new(&m.keys().stream(name), 100))
                    .await
                    .unwrap();
                prop_assert_eq!(stored.len(), *n, "messages at {:?}", name);
                for entry in &stored {
                    let msg = streams_core::StreamMessage::from_entry(name, entry.id.as_str(), &entry.fields);
                    prop_assert_eq!(&msg.data["to"], &json!(name));
                }
            }
            Ok(())
        })?;
    }
}
