//! Trace context across processes: the W3C `traceparent` an envelope
//! carries, written at send and read back into a handler's span (feature
//! `otel`).

/// A parsed W3C Trace Context `traceparent`
/// (`<version>-<trace-id>-<parent-id>-<flags>`, lowercase hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
}

/// Lowercase hexadecimal digits only (the format allows no others).
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TraceParent {
    /// Parses `value` as the W3C Trace Context (level 1) specifies: version
    /// `00` has exactly four fields; a later version may append fields after
    /// a `-`, which are ignored; version `ff`, all-zero ids, uppercase and
    /// anything else are refused.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let head = value.get(..55)?;
        let rest = &value[55..];
        let mut parts = head.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || !lower_hex(version, 2)
            || !lower_hex(trace, 32)
            || !lower_hex(span, 16)
            || !lower_hex(flags, 2)
            || version == "ff"
            || (version == "00" && !rest.is_empty())
            || (!rest.is_empty() && !rest.starts_with('-'))
        {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Whether `value` is a valid W3C `traceparent`. Decoding keeps a message's
/// `traceparent` only when it is; an invalid one is ignored.
pub(crate) fn is_valid(value: &str) -> bool {
    TraceParent::parse(value).is_some()
}

/// The `traceparent` of the current span's OpenTelemetry context, when it
/// has a valid one. Always `None` without the `otel` feature.
pub(crate) fn current() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        otel::current().map(|p| p.to_string())
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

/// Makes `span` a child of the remote span named by `traceparent`, so that
/// the trace a sender started goes on in the handler of another process.
///
/// Call it before the span is first entered (OpenTelemetry starts the span
/// then, and its parent cannot change after). Without the `otel` feature,
/// without a `traceparent`, with an invalid one, or when the subscriber has
/// no OpenTelemetry layer, it does nothing.
///
/// ```
/// use streams_core::observe;
///
/// let handler = tracing::info_span!("handle_task");
/// observe::set_remote_parent(
///     &handler,
///     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
/// );
/// let _entered = handler.enter();
/// ```
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(parent) = traceparent.and_then(TraceParent::parse) else {
        return;
    };
    #[cfg(feature = "otel")]
    otel::set_parent(span, parent);
    #[cfg(not(feature = "otel"))]
    let _ = (span, parent);
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    pub(super) fn current() -> Option<TraceParent> {
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| TraceParent {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        })
    }

    pub(super) fn set_parent(span: &tracing::Span, parent: TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = %e, "could not continue the sender's trace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_form() {
        let p = TraceParent::parse(VALID).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
        assert_eq!(p.to_string(), VALID);
        // A later version may add fields; they are ignored.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(
            TraceParent::parse(future).map(|p| p.span_id),
            Some(p.span_id)
        );
    }

    #[test]
    fn refuses_everything_else_without_panicking() {
        for bad in [
            "",
            "00",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        // Any cut of a valid value is refused, at any byte.
        for end in 0..VALID.len() {
            assert!(!is_valid(&VALID[..end]));
        }
    }
}
