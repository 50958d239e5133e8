//! Which Redis and namespace a command works on.

use clap::{Args, ValueEnum};
use xnai_streams::{
    DlqConfig, DlqLayout, Manager, ManagerConfig, RedisBackend, RedisConfig, RedisStreamManager,
};

use crate::output::Failure;

/// Where `--redis` falls back to.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The consumer name the operator's commands use in a group (`claim`).
pub(crate) const CLI_CONSUMER: &str = "xnai-streams-cli";

/// Options that pick the server and the data, for every command. `Debug`
/// shows the URL without its password.
#[derive(Args)]
pub(crate) struct Target {
    /// Redis server URL, or the comma-separated URLs of a Redis Cluster's
    /// nodes. Default: REDIS_URL, then redis://127.0.0.1:6379 (`demo` runs
    /// in-process unless this is given).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// Key namespace: the prefix the managers of the application use
    /// (`ManagerConfig::namespace`). Default: none.
    #[arg(long, global = true, value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// The dead-letter layout the application uses.
    #[arg(long, global = true, value_enum, default_value_t = Layout::Shared)]
    pub(crate) dlq_layout: Layout,
}

/// `DlqLayout`, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Layout {
    /// One dead-letter stream for every stream (`xnai:dlq`).
    Shared,
    /// One dead-letter stream per stream (`xnai:dlq:{<stream>}`).
    PerStream,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field(
                "redis",
                &self
                    .redis
                    .as_ref()
                    .map(|url| RedisConfig::new(url.as_str()).redacted_url()),
            )
            .field("namespace", &self.namespace)
            .field("dlq_layout", &self.dlq_layout)
            .finish()
    }
}

impl Target {
    /// The server's URL: `--redis`, else `REDIS_URL`, else the default.
    pub(crate) fn url(&self) -> String {
        self.redis
            .clone()
            .or_else(|| {
                std::env::var("REDIS_URL")
                    .ok()
                    .filter(|u| !u.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
    }

    /// The manager configuration of the operator's commands.
    pub(crate) fn config(&self, consumer: &str) -> ManagerConfig {
        let layout = match self.dlq_layout {
            Layout::Shared => DlqLayout::Shared,
            Layout::PerStream => DlqLayout::PerStream,
        };
        let config = ManagerConfig::default()
            .with_consumer_id(consumer)
            .with_dlq(DlqConfig::default().with_layout(layout));
        match &self.namespace {
            Some(ns) => config.with_namespace(ns.clone()),
            None => config,
        }
    }

    /// A manager on the server, initialized, for `consumer`.
    pub(crate) async fn manager_as(&self, consumer: &str) -> Result<RedisStreamManager, Failure> {
        self.manager_with(self.config(consumer)).await
    }

    /// A manager on the server, initialized, with `config` (from
    /// [`config`](Self::config), adjusted).
    pub(crate) async fn manager_with(
        &self,
        config: ManagerConfig,
    ) -> Result<RedisStreamManager, Failure> {
        // Bad names fail before anything is contacted.
        config.validate()?;
        let backend = RedisBackend::connect(&self.url()).await?;
        let manager = Manager::new(backend, config)?;
        manager.initialize().await?;
        Ok(manager)
    }

    /// A manager on the server, initialized.
    pub(crate) async fn manager(&self) -> Result<RedisStreamManager, Failure> {
        self.manager_as(CLI_CONSUMER).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let target = Target {
            redis: Some("redis://app:hunter2-secret@db:6379".to_owned()),
            namespace: Some("t1".to_owned()),
            dlq_layout: Layout::Shared,
        };
        let shown = format!("{target:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("redis://app:***@db:6379"), "{shown}");
    }
}
