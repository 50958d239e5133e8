//! The conformance suite of xnai-streams: one `async fn` per behaviour, run
//! against every backend, so a backend that passes gets the whole
//! [`StreamManager`](streams_core::StreamManager) API for free.
//!
//! A backend's `tests/conformance.rs` is one line:
//!
//! ```ignore
//! streams_conformance::conformance_suite!(MyHarness::new());
//! ```
//!
//! The expression builds a [`TestBackend`] for each case. Each case runs in
//! its own namespace with a timeout, so cases run in parallel on one server
//! and a hang is a failure, and the namespace is cleaned up afterwards, pass
//! or fail. Tests are named `<area>::<case>` and can be filtered.
//!
//! # Cases
//!
//! CASE_LIST

pub mod cases;
pub mod support;

pub use support::{DynBackend, TestBackend, TestContext, TestManager, run_case};

/// Expands the whole suite into `#[tokio::test]`s, one module per area.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::__for_each_case!($crate::__conformance_tests, $harness);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($harness:expr; $( $area:ident { $( $case:ident ),* $(,)? } )*) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::run_case(
                            concat!(stringify!($area), "::", stringify!($case)),
                            $harness,
                            |ctx| async move { $crate::cases::$area::$case(&ctx).await },
                        )
                        .await;
                    }
                )*
            }
        )*
    };
}
