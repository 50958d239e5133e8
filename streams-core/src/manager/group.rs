//! Consumer groups as a manager knows them: their keys, the registry, and
//! recreating a group the server lost.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::Manager;
use crate::backend::{CreateGroup, EntryId, ScheduleKeys, StartAt, StreamBackend};
use crate::config::ConsumerGroupConfig;
use crate::error::{Result, StreamError};
use crate::names::{StreamUse, validate_name};
use crate::observe::{Count, Labels};

/// The registry field of a deleted group's mark.
const DELETED_AT: &str = "deleted_at";

/// What the registry holds for a group name.
#[derive(Debug)]
pub(crate) enum Registered {
    /// The group's configuration.
    Group(ConsumerGroupConfig),
    /// The group was deleted (`{"deleted_at": "<time>"}`).
    Deleted,
}

/// One stream of a group and its retry keys.
#[derive(Debug)]
pub(crate) struct Source {
    /// The stream name users see.
    pub(crate) logical: String,
    /// The stream key.
    pub(crate) key: String,
    /// The group's retry schedule and ready stream for this stream.
    pub(crate) retry: ScheduleKeys,
}

/// A group as this manager knows it.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) config: ConsumerGroupConfig,
    /// This manager's consumer name in the group.
    pub(crate) consumer: String,
    /// The group's and the consumer's names, shared by every delivery.
    pub(crate) names: (Arc<str>, Arc<str>),
    pub(crate) sources: Vec<Source>,
    /// `(schedule, ready)` of every stream.
    pub(crate) schedules: Vec<ScheduleKeys>,
    pub(crate) read: Mutex<ReadState>,
    /// When this configuration was last compared with the registry's.
    pub(crate) checked: Mutex<Instant>,
    /// The entries this consumer held when this manager first read the
    /// group, delivered again one per read before anything new.
    pub(crate) backlog: tokio::sync::Mutex<Backlog>,
    /// The backlog has been listed: a task that finds it busy reads live
    /// entries instead of waiting.
    pub(crate) backlog_listed: AtomicBool,
    /// The backlog is done (or the backend cannot redeliver).
    pub(crate) backlog_done: AtomicBool,
}

/// This consumer's own pending entries from before this manager started.
#[derive(Debug, Default)]
pub(crate) enum Backlog {
    /// Not listed yet: nothing may be read live until it is, or the list
    /// would take in entries delivered since.
    #[default]
    Unlisted,
    /// Still to deliver again, in order.
    Listed(VecDeque<Held>),
    /// Delivered, or nothing to do.
    Done,
}

/// An entry of the backlog.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) key: String,
    pub(crate) id: EntryId,
    /// Its delivery count when listed: a different count means it was
    /// delivered since (claimed to this consumer again), and it is skipped.
    pub(crate) deliveries: u64,
    /// A delivery of it was started and not seen to finish (the read was
    /// cancelled or failed): its count may have grown by that delivery, so
    /// the next try takes any count.
    pub(crate) tried: bool,
}

/// Per-group read progress of this manager.
#[derive(Debug)]
pub(crate) struct ReadState {
    /// Which key a live read lists first, turning each read, so that the
    /// remainder of a count goes to every key in turn.
    pub(crate) rotation: usize,
    /// When due retries were last promoted.
    pub(crate) last_promote: Option<Instant>,
    /// When the next known retry falls due.
    pub(crate) next_due: Option<Instant>,
    /// Why promoting this group's retries last failed, while it fails.
    pub(crate) promote_error: Option<String>,
    /// The last entry a live read delivered, per stream key: where the
    /// group is recreated if the server loses it.
    pub(crate) last_delivered: HashMap<String, EntryId>,
    /// Since when the group's ready streams have been found empty by a
    /// live read, with no promotion by this manager since: for up to the
    /// promote interval from then, live reads leave them out (one round
    /// trip fewer per read), and then ask again.
    pub(crate) ready_quiet_since: Option<Instant>,
    /// Where the next claim goes on, after one stopped at a crash suspect.
    pub(crate) claim_from: Option<super::claim::ClaimFrom>,
}

impl Group {
    /// The source a key belongs to, and whether the key is its ready stream.
    pub(crate) fn source_of(&self, key: &str) -> Option<(&Source, bool)> {
        self.sources.iter().find_map(|s| {
            if s.key == key {
                Some((s, false))
            } else if s.retry.ready == key {
                Some((s, true))
            } else {
                None
            }
        })
    }

    /// Every key the group reads: each stream, then each ready stream.
    pub(crate) fn all_keys(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .map(|s| s.key.as_str())
            .chain(self.sources.iter().map(|s| s.retry.ready.as_str()))
    }

    /// What a live read asks for: every key (without the ready streams
    /// unless `with_ready`), starting at the rotation.
    pub(crate) fn live_keys(&self, rotation: usize, with_ready: bool) -> Vec<String> {
        let keys: Vec<&str> = if with_ready {
            self.all_keys().collect()
        } else {
            self.sources.iter().map(|s| s.key.as_str()).collect()
        };
        let n = keys.len().max(1);
        (0..keys.len())
            .map(|i| keys[(rotation + i) % n].to_owned())
            .collect()
    }

    /// Whether `key` is one of the group's ready streams.
    pub(crate) fn is_ready_key(&self, key: &str) -> bool {
        self.sources.iter().any(|s| s.retry.ready == key)
    }

    pub(crate) fn lock_read(&self) -> MutexGuard<'_, ReadState> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A group whose configuration changed keeps the backlog of the one it
/// replaces: listing it again would take in entries delivered since, and
/// deliver them twice.
fn adopt_backlog(old: &Group, new: &mut Group) {
    if old.consumer != new.consumer {
        // Another consumer name: another pending list, listed afresh.
        return;
    }
    let state = match old.backlog.try_lock() {
        Ok(mut backlog) => std::mem::replace(&mut *backlog, Backlog::Done),
        // A read is delivering it: it finishes that entry; the rest are
        // claimable after `claim_idle`.
        Err(_) => Backlog::Done,
    };
    let state = match state {
        Backlog::Listed(queue) => Backlog::Listed(
            queue
                .into_iter()
                .filter(|held| new.source_of(&held.key).is_some())
                .collect(),
        ),
        other => other,
    };
    new.backlog_listed = AtomicBool::new(!matches!(state, Backlog::Unlisted));
    new.backlog_done = AtomicBool::new(matches!(state, Backlog::Done));
    *new.backlog.get_mut() = state;
}

impl<B: StreamBackend> Manager<B> {
    fn consumer_name(&self, config: &ConsumerGroupConfig) -> String {
        match &self.inner.default_suffix {
            Some(suffix) => format!("{}{suffix}", config.consumer_prefix),
            None => self.inner.consumer_id.clone(),
        }
    }

    fn build_group(&self, config: ConsumerGroupConfig) -> Result<Group> {
        config.validate()?;
        for stream in &config.streams {
            self.keys().check_stream(stream, StreamUse::Read)?;
        }
        let consumer = self.consumer_name(&config);
        validate_name("consumer", &consumer)?;
        let keys = self.keys();
        let sources: Vec<Source> = config
            .streams
            .iter()
            .map(|s| Source {
                logical: s.clone(),
                key: keys.stream(s),
                retry: ScheduleKeys::new(
                    keys.retry_schedule(s, &config.name),
                    keys.retry_ready(s, &config.name),
                ),
            })
            .collect();
        let history = self.supports(crate::backend::Feature::Redelivery);
        let schedules = sources.iter().map(|s| s.retry.clone()).collect();
        Ok(Group {
            names: (
                Arc::from(config.name.as_str()),
                Arc::from(consumer.as_str()),
            ),
            config,
            consumer,
            sources,
            schedules,
            backlog: tokio::sync::Mutex::new(if history {
                Backlog::Unlisted
            } else {
                Backlog::Done
            }),
            backlog_listed: AtomicBool::new(!history),
            backlog_done: AtomicBool::new(!history),
            read: Mutex::new(ReadState {
                rotation: 0,
                last_promote: None,
                next_due: None,
                promote_error: None,
                last_delivered: HashMap::new(),
                ready_quiet_since: None,
                claim_from: None,
            }),
            checked: Mutex::new(Instant::now()),
        })
    }

    /// The group, if this manager has used it.
    pub(crate) fn cached_group_state(&self, name: &str) -> Option<Arc<Group>> {
        self.cached_group(name)
    }

    fn cached_group(&self, name: &str) -> Option<Arc<Group>> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn cache_group(&self, group: Group) -> Arc<Group> {
        let group = Arc::new(group);
        self.inner
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group.config.name.clone(), Arc::clone(&group));
        group
    }

    /// A registry entry: a configuration, or a deleted group's mark.
    pub(crate) fn parse_registered(name: &str, json: &str) -> Result<Registered> {
        let decode_error = |e: serde_json::Error| StreamError::Decode {
            what: format!("registry entry of group `{name}`"),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(decode_error)?;
        if value.get(DELETED_AT).is_some() && value.get("name").is_none() {
            return Ok(Registered::Deleted);
        }
        let config: ConsumerGroupConfig = serde_json::from_value(value).map_err(decode_error)?;
        if config.name != name {
            return Err(StreamError::Decode {
                what: format!("registry entry of group `{name}`"),
                message: format!("it describes group `{}`", config.name),
            });
        }
        Ok(Registered::Group(config))
    }

    /// The registry entry of `name`, if there is one.
    pub(crate) async fn registered(&self, name: &str) -> Result<Option<Registered>> {
        match self
            .backend()
            .registry_get(self.keys().registry(), name)
            .await?
        {
            Some(json) => Self::parse_registered(name, &json).map(Some),
            None => Ok(None),
        }
    }

    /// The group named `name`: known here, or found in the registry.
    pub(crate) async fn group(&self, name: &str) -> Result<Arc<Group>> {
        validate_name("group", name)?;
        if let Some(g) = self.cached_group(name) {
            if self.due_for_check(&g) {
                return Ok(self.refresh_group(g).await);
            }
            return Ok(g);
        }
        let Some(Registered::Group(config)) = self.registered(name).await? else {
            return Err(StreamError::GroupNotFound {
                group: name.to_owned(),
            });
        };
        let group = self.build_group(config)?;
        // Another task may have cached it meanwhile; keep the first.
        if let Some(g) = self.cached_group(name) {
            return Ok(g);
        }
        Ok(self.cache_group(group))
    }

    /// Whether `group`'s configuration is due to be compared with the
    /// registry's (every [`ManagerConfig::refresh_interval`](crate::ManagerConfig::refresh_interval)); marks it checked, so that one
    /// caller does it.
    fn due_for_check(&self, group: &Group) -> bool {
        let mut checked = group.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.elapsed() < self.config().refresh_interval {
            return false;
        }
        *checked = Instant::now();
        true
    }

    /// Follows a configuration another process registered since this
    /// manager built `group` (a stream added, partitions grown, a new
    /// batch size): the group is built again from it, keeping this
    /// consumer's backlog and read progress. Anything else (the registry
    /// unreadable, the group deleted or gone from it) keeps `group` as it
    /// is; reads deal with those as before.
    async fn refresh_group(&self, group: Arc<Group>) -> Arc<Group> {
        let name = group.config.name.clone();
        let config = match self.registered(&name).await {
            // Compared as stored: a value that does not round-trip exactly
            // (a block of 1.5 ms) is no change.
            Ok(Some(Registered::Group(config)))
                if Self::encode_config(&config).ok() != Self::encode_config(&group.config).ok() =>
            {
                config
            }
            Ok(_) => return group,
            Err(e) => {
                tracing::debug!(group = %name, error = %e, "cannot compare the group's configuration with the registry's");
                return group;
            }
        };
        let mut fresh = match self.build_group(config) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(group = %name, error = %e, "the registered configuration is not valid here; keeping the one in use");
                return group;
            }
        };
        tracing::info!(group = %name, streams = ?fresh.config.streams, "following the group's registered configuration");
        adopt_backlog(&group, &mut fresh);
        std::mem::swap(
            &mut *group.read.lock().unwrap_or_else(PoisonError::into_inner),
            fresh.read.get_mut().unwrap_or_else(PoisonError::into_inner),
        );
        self.cache_group(fresh)
    }

    fn encode_config(config: &ConsumerGroupConfig) -> Result<String> {
        serde_json::to_string(config).map_err(|e| StreamError::Encode {
            what: format!("configuration of group `{}`", config.name),
            message: e.to_string(),
        })
    }

    /// Creates the group on each of its streams and in the registry.
    /// See [`StreamManager::create_consumer_group`](crate::StreamManager::create_consumer_group).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Config`], backend errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %config.name))]
    pub async fn create_consumer_group(&self, config: &ConsumerGroupConfig) -> Result<()> {
        self.ready().await?;
        let mut config = config.clone();
        self.expand_partitions(&mut config).await?;
        let group = self.build_group(config.clone())?;
        let json = Self::encode_config(&group.config)?;
        let backend = self.backend();
        let name = &group.config.name;
        for s in &group.sources {
            backend
                .create_group(CreateGroup::new(
                    &s.key,
                    name,
                    group.config.start.start_at(),
                ))
                .await?;
            backend
                .create_group(CreateGroup::new(&s.retry.ready, name, StartAt::Beginning))
                .await?;
        }
        backend
            .registry_put(self.keys().registry(), name, &json)
            .await?;
        // A stream partitioned (or grown) while this ran: its new
        // partitions are read from their beginning, and the group is
        // registered again with them.
        let mut again = group.config.clone();
        self.expand_partitions(&mut again).await?;
        if again.streams != group.config.streams {
            self.create_from_beginning(name, &group.config.streams, &again.streams)
                .await?;
            return Box::pin(self.create_consumer_group(&again)).await;
        }
        match self.cached_group(&config.name) {
            Some(existing) if existing.config == group.config => {}
            Some(existing) => {
                let mut group = group;
                adopt_backlog(&existing, &mut group);
                self.cache_group(group);
            }
            None => {
                self.cache_group(group);
            }
        }
        Ok(())
    }

    /// Removes a group everywhere.
    /// See [`StreamManager::delete_consumer_group`](crate::StreamManager::delete_consumer_group).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn delete_consumer_group(&self, group_name: &str) -> Result<bool> {
        self.ready().await?;
        let group = self.group(group_name).await?;
        let backend = self.backend();
        let registered = matches!(
            self.registered(group_name).await,
            Ok(Some(Registered::Group(_)))
        );
        // The mark goes first: a reader that finds the group missing from
        // here on learns it was deleted, and does not recreate it.
        let mark = serde_json::json!({ DELETED_AT: crate::codec::now_rfc3339() }).to_string();
        backend
            .registry_put(self.keys().registry(), group_name, &mark)
            .await?;
        let mut own_keys = Vec::with_capacity(2 * group.sources.len());
        for s in &group.sources {
            backend.destroy_group(&s.key, group_name).await?;
            // The retry keys belong to the group alone.
            own_keys.push(s.retry.schedule.clone());
            own_keys.push(s.retry.ready.clone());
        }
        backend.delete_keys(&own_keys).await?;
        self.inner
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(group_name);
        Ok(registered)
    }

    /// After `NOGROUP`: recreate the group on every key and re-register it.
    /// A stream starts after the last entry this manager saw delivered on
    /// it (so a group destroyed on a surviving stream does not deliver its
    /// history again), or from the beginning when it saw none or the
    /// stream's history does not reach it (the stream was lost too), so
    /// nothing added since is skipped.
    ///
    /// The registry tells a lost group from a deleted one:
    /// [`delete_consumer_group`](Self::delete_consumer_group) leaves a mark
    /// there, so a deleted group is forgotten here and the call fails with
    /// `GroupNotFound`. A registered group is recreated and its entry left
    /// as it is (it may be newer than this manager's). A group with no
    /// entry at all was lost with the registry (a restart without
    /// persistence): it is recreated and registered again.
    pub(crate) async fn recover_group(&self, group: &Group) -> Result<()> {
        let backend = self.backend();
        let name = &group.config.name;
        let registry = self.keys().registry();
        let entry = self.registered(name).await;
        if matches!(entry, Ok(Some(Registered::Deleted))) {
            return Err(self.deleted(group));
        }
        tracing::warn!(group = %name, "consumer group missing on the server; recreating it");
        let last = group.lock_read().last_delivered.clone();
        for s in &group.sources {
            let start = match last.get(&s.key) {
                Some(id) => StartAt::After(id.clone()),
                None => StartAt::Beginning,
            };
            backend
                .create_group(CreateGroup::new(&s.key, name, start))
                .await?;
            backend
                .create_group(CreateGroup::new(&s.retry.ready, name, StartAt::Beginning))
                .await?;
        }
        match entry {
            Ok(None) => {
                let json = Self::encode_config(&group.config)?;
                backend.registry_put(registry, name, &json).await?;
            }
            // Deleted while it was being recreated: undo, and say so.
            Ok(Some(Registered::Group(_))) | Err(_)
                if matches!(self.registered(name).await, Ok(Some(Registered::Deleted))) =>
            {
                for s in &group.sources {
                    backend.destroy_group(&s.key, name).await?;
                    backend.destroy_group(&s.retry.ready, name).await?;
                }
                return Err(self.deleted(group));
            }
            _ => {}
        }
        self.count(Count::GroupRecreated, Labels::group(name), 1);
        Ok(())
    }

    /// Forgets a group found deleted; the error to return.
    fn deleted(&self, group: &Group) -> StreamError {
        tracing::warn!(group = %group.config.name, "consumer group was deleted; forgetting it");
        self.forget_group(group);
        StreamError::GroupNotFound {
            group: group.config.name.clone(),
        }
    }

    /// Drops `group` from the groups this manager knows, unless it has been
    /// replaced meanwhile.
    fn forget_group(&self, group: &Group) {
        let mut groups = self
            .inner
            .groups
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if groups
            .get(&group.config.name)
            .is_some_and(|g| std::ptr::eq(Arc::as_ptr(g), group))
        {
            groups.remove(&group.config.name);
        }
    }

    /// Runs `op`; on `NOGROUP` recreates the group and runs it once more.
    pub(crate) async fn with_recovery<T, F, Fut>(&self, group: &Group, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(StreamError::NoGroup { .. }) => {
                self.recover_group(group).await?;
                op().await
            }
            other => other,
        }
    }

    /// Something of every group this manager knows, sorted, without repeats.
    fn of_known_groups<T: Ord>(&self, f: impl Fn(&Group) -> Vec<T>) -> Vec<T> {
        let mut out: Vec<T> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flat_map(|g| f(g))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The streams of every group this manager knows, sorted, without repeats.
    pub(crate) fn known_streams(&self) -> Vec<String> {
        self.of_known_groups(|g| g.sources.iter().map(|s| s.logical.clone()).collect())
    }

    /// The names of the groups this manager knows, sorted.
    pub fn consumer_groups(&self) -> Vec<String> {
        self.of_known_groups(|g| vec![g.config.name.clone()])
    }

    /// The group's configuration, if this manager knows the group or finds it
    /// in the registry.
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = name))]
    pub async fn group_config(&self, name: &str) -> Result<ConsumerGroupConfig> {
        self.ready().await?;
        Ok(self.group(name).await?.config.clone())
    }

    /// Every group in the registry, with its configuration, sorted by name.
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Decode`] for an unreadable entry.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn registered_groups(&self) -> Result<Vec<ConsumerGroupConfig>> {
        self.ready().await?;
        let mut out = Vec::new();
        for (name, json) in self.backend().registry_list(self.keys().registry()).await? {
            if let Registered::Group(config) = Self::parse_registered(&name, &json)? {
                out.push(config);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Records how promoting `group`'s retries went: a failure is counted
    /// and logged (as an error when it starts, then at debug level), and
    /// kept for `health` until a promotion succeeds.
    pub(crate) fn report_promotion(&self, group: &Group, error: Option<String>) {
        let mut st = group.lock_read();
        match (&error, &st.promote_error) {
            (Some(e), None) => {
                tracing::error!(group = %group.config.name, error = %e, "promoting due retries failed; live messages are still delivered");
            }
            (Some(e), Some(_)) => {
                tracing::debug!(group = %group.config.name, error = %e, "promoting due retries still fails");
            }
            (None, Some(_)) => {
                tracing::info!(group = %group.config.name, "promoting due retries works again");
            }
            (None, None) => {}
        }
        if error.is_some() {
            self.count(Count::PromoteFailed, Labels::group(&group.config.name), 1);
        }
        st.promote_error = error;
    }
}
