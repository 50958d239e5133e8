//! Entry ids and cursors: opaque values whose meaning each backend defines.
//!
//! Core never parses or compares them; it only hands back what a backend
//! gave it. Redis ids look like `1700000000000-0`, but nothing outside the
//! Redis and memory backends may rely on that.

use std::borrow::Borrow;
use std::fmt;

/// The id of a stream entry, as its backend wrote it.
///
/// Opaque: equal ids name the same entry of a stream, and the text is what
/// users see in [`StreamMessage::id`](crate::StreamMessage::id); nothing
/// else about it is defined here (no order, no syntax).
///
/// ```
/// use streams_core::backend::EntryId;
///
/// let id = EntryId::from("1700000000000-0");
/// assert_eq!(id.as_str(), "1700000000000-0");
/// assert_eq!(id.to_string(), "1700000000000-0");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EntryId(String);

impl EntryId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for EntryId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for EntryId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<EntryId> for String {
    fn from(id: EntryId) -> Self {
        id.0
    }
}

impl AsRef<str> for EntryId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for EntryId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for EntryId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for EntryId {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<EntryId> for String {
    fn eq(&self, other: &EntryId) -> bool {
        *self == other.0
    }
}

impl PartialEq<&str> for EntryId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Where a paged scan (claiming) goes on. Opaque: only the backend that
/// returned a cursor knows what it means; pass it back unchanged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor from the backend's own text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The backend's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_work_as_map_keys_by_str() {
        let mut m = HashMap::new();
        m.insert(EntryId::from("1-0"), 1);
        assert_eq!(m.get("1-0"), Some(&1));
        assert_eq!(format!("{:?}", EntryId::from("1-0")), "\"1-0\"");
        assert_eq!(EntryId::from("x"), "x");
        assert_eq!(Cursor::new("0-0").as_str(), "0-0");
    }
}
