//! Trace context across agents (feature `otel`): a send made inside a span
//! writes its `traceparent`, and a handler span restored from it on another
//! manager continues the same trace, as the spans an OpenTelemetry SDK
//! exports show.

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamBackend, observe};
use streams_memory::MemoryBackend;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// A subscriber that exports every span to an in-memory exporter.
fn tracing_to_memory() -> (
    SdkTracerProvider,
    InMemorySpanExporter,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test")));
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsites first seen by a test without this subscriber cached that
    // no one wants them; ask again now that one does.
    tracing::callsite::rebuild_interest_cache();
    (provider, exporter, guard)
}

/// The tests of this file run one at a time: a callsite's interest is
/// cached process-wide, and a test registering it on another thread while
/// this one installs its subscriber could leave it disabled here.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span `{name}` among {spans:#?}"))
}

// The runtime is single-threaded, so the subscriber set for this thread
// sees every span of the test.
#[tokio::test]
async fn a_handler_continues_the_senders_trace() {
    let _serial = SERIAL.lock().await;
    let (provider, exporter, _guard) = tracing_to_memory();
    let backend = MemoryBackend::new();
    let sender = Manager::new(
        backend.clone(),
        ManagerConfig::default().with_consumer_id("agent-a"),
    )
    .unwrap();
    let receiver = Manager::new(
        backend.clone(),
        ManagerConfig::default().with_consumer_id("agent-b"),
    )
    .unwrap();
    receiver
        .create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"]))
        .await
        .unwrap();

    // Agent A plans a task and sends it inside its span.
    let plan = tracing::info_span!("plan_task");
    let id = sender
        .send_message("jobs", json!({"task": "index"}), None)
        .instrument(plan)
        .await
        .unwrap();
    let stored = backend
        .range(streams_core::backend::RangeQuery::new("jobs", 10))
        .await
        .unwrap();
    let written = stored[0]
        .fields
        .iter()
        .find(|(k, _)| k.as_ref() == b"traceparent")
        .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
        .expect("a send inside a span writes its traceparent");

    // Agent B handles it in a span restored from the message.
    let messages = receiver.read_messages("workers", None, None).await.unwrap();
    assert_eq!(messages[0].id, id);
    assert_eq!(messages[0].traceparent.as_deref(), Some(written.as_str()));
    let handle = tracing::info_span!("handle_task");
    observe::set_remote_parent(&handle, messages[0].traceparent.as_deref());
    async {
        receiver.acknowledge(&messages[0], "workers").await.unwrap();
    }
    .instrument(handle)
    .await;

    // A message whose traceparent is not valid gives a root span.
    let orphan = tracing::info_span!("orphan_task");
    observe::set_remote_parent(&orphan, Some("00-not-a-trace-01"));
    drop(orphan.enter());
    drop(orphan);

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let plan = span(&spans, "plan_task");
    let send = span(&spans, "send_message");
    let handle = span(&spans, "handle_task");
    let ack = span(&spans, "acknowledge");
    let orphan = span(&spans, "orphan_task");
    let read = span(&spans, "read_messages");

    // One trace from planning to handling: plan -> send -> handle -> ack.
    let trace = plan.span_context.trace_id();
    for s in [send, handle, ack] {
        assert_eq!(s.span_context.trace_id(), trace, "{}", s.name);
    }
    assert_eq!(send.parent_span_id, plan.span_context.span_id());
    assert_eq!(handle.parent_span_id, send.span_context.span_id());
    assert_eq!(ack.parent_span_id, handle.span_context.span_id());
    assert_eq!(
        written,
        format!("00-{}-{}-01", trace, send.span_context.span_id()),
        "the traceparent names the send's span, sampled"
    );
    // Spans outside the trace are not in it.
    assert_ne!(read.span_context.trace_id(), trace);
    assert_ne!(orphan.span_context.trace_id(), trace);
    assert_eq!(orphan.parent_span_id, SpanId::INVALID);
    // The manager's spans name what they work on.
    let attribute = |s: &SpanData, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute(send, "stream").as_deref(), Some("jobs"));
    assert_eq!(attribute(ack, "group").as_deref(), Some("workers"));
    assert_eq!(attribute(ack, "id").as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn no_traceparent_without_a_trace() {
    let _serial = SERIAL.lock().await;
    // The feature is on, but no subscriber has an OpenTelemetry layer.
    let backend = MemoryBackend::new();
    let manager = Manager::new(backend.clone(), ManagerConfig::default()).unwrap();
    manager
        .send_message("jobs", json!({"n": 1}), None)
        .instrument(tracing::info_span!("untraced"))
        .await
        .unwrap();
    let stored = backend
        .range(streams_core::backend::RangeQuery::new("jobs", 10))
        .await
        .unwrap();
    assert!(
        !stored[0]
            .fields
            .iter()
            .any(|(k, _)| k.as_ref() == b"traceparent"),
        "{:?}",
        stored[0].fields
    );
}

// The runner's handler span continues the sender's trace, and what the
// handler does (its acknowledgement here) is part of it.
#[tokio::test]
async fn the_runners_handler_span_continues_the_senders_trace() {
    let _serial = SERIAL.lock().await;
    use streams_core::StreamManagerExt;
    use streams_core::runner::{CancellationToken, ConsumeOptions, Job};

    let (provider, exporter, _guard) = tracing_to_memory();
    let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default()).unwrap();
    manager
        .create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"]))
        .await
        .unwrap();
    manager
        .send_message("jobs", json!({"task": "index"}), None)
        .instrument(tracing::info_span!("plan_task"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let summary = manager
        .consume("workers", move |_job: Job<serde_json::Value>| {
            let stopper = stopper.clone();
            async move {
                tracing::info_span!("run_tool").in_scope(|| ());
                stopper.cancel();
                Ok::<(), String>(())
            }
        })
        .options(ConsumeOptions::default().poll(std::time::Duration::from_millis(20)))
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!(summary.acked, 1);

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let send = span(&spans, "send_message");
    let handle = span(&spans, "handle");
    let tool = span(&spans, "run_tool");
    let trace = send.span_context.trace_id();
    assert_eq!(handle.span_context.trace_id(), trace);
    assert_eq!(handle.parent_span_id, send.span_context.span_id());
    assert_eq!(tool.parent_span_id, handle.span_context.span_id());
}
