//! The group registry: where every process finds a consumer group's
//! configuration by the group's name.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;

/// A small map from group names to their configuration (JSON text), kept
/// under one key of the backend (a Redis hash).
///
/// Every [`StreamBackend`](super::StreamBackend) is one; a transport without
/// a natural place for it (a key-value bucket, a table) implements it there.
#[async_trait]
pub trait GroupRegistry: Send + Sync + Debug + 'static {
    /// Stores `config` for `group` in the registry at `key`, replacing what
    /// was there.
    ///
    /// # Contract
    /// `group_found_by_name_from_second_manager`.
    async fn registry_put(&self, key: &str, group: &str, config: &str) -> Result<()>;

    /// The configuration of `group`, if registered.
    ///
    /// # Contract
    /// `group_found_by_name_from_second_manager`.
    async fn registry_get(&self, key: &str, group: &str) -> Result<Option<String>>;

    /// Every `(group, config)` of the registry.
    ///
    /// # Contract
    /// `registry_lists_groups`.
    async fn registry_list(&self, key: &str) -> Result<Vec<(String, String)>>;
}
