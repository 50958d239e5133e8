//! The cases, one module per area.

pub mod basics;

/// The list of every case, by area. Adding a case means adding its name here.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ($m:path, $harness:expr) => {
        $m!($harness;
            basics {
                send_returns_id,
            }
        );
    };
}
