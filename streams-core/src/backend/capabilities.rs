//! What a backend does natively. The [`Manager`](crate::Manager) picks its
//! strategy from these, and the conformance suite picks the cases that
//! apply: a case that needs a feature a backend lacks is skipped, with the
//! reason printed, never passed silently.

use std::fmt;

/// One thing a backend may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Feature {
    /// A consumer can be handed its own pending entries again
    /// ([`StreamBackend::redeliver`](super::StreamBackend::redeliver)).
    /// With it, a restarted consumer resumes its own work first; without
    /// it, the transport must redeliver unacknowledged work by itself.
    Redelivery,
    /// Idle pending entries can be taken over explicitly
    /// ([`StreamBackend::auto_claim`](super::StreamBackend::auto_claim)).
    /// Without it, `claim_pending_messages` is refused.
    ExplicitClaims,
    /// Retries are scheduled on a per-group schedule and promoted into a
    /// per-group ready stream when due ([`MoveTarget::Schedule`](super::MoveTarget::Schedule),
    /// [`StreamBackend::promote_due`](super::StreamBackend::promote_due)).
    RetrySchedule,
    /// [`GroupInfo::lag`](super::GroupInfo::lag) can be known.
    GroupLag,
    /// The consumers of a group can be listed and removed
    /// ([`StreamBackend::consumers`](super::StreamBackend::consumers),
    /// [`StreamBackend::delete_consumer`](super::StreamBackend::delete_consumer)).
    ConsumerListing,
    /// Sends can wait until replicas have them, or they are fsynced
    /// ([`StreamBackend::add_durable`](super::StreamBackend::add_durable)).
    /// Without it, a manager configured with
    /// [`Durability`](crate::Durability) is refused when it is built.
    DurableSends,
    /// A move whose new copy goes to another stream's key (the shared
    /// dead-letter stream), and a transfer between two streams, are
    /// atomic. Without it (Redis Cluster, where the two keys may live on
    /// different nodes) the backend writes the copy first, then
    /// acknowledges (or deletes) the original, fenced as usual: a refused
    /// acknowledgement deletes the copy again, and a crash or lost
    /// connection in between leaves a duplicate, never a loss. Moves whose
    /// keys share a stream (retry scheduling, a per-stream dead-letter
    /// stream) are atomic either way.
    AtomicCrossStreamMoves,
}

impl Feature {
    /// Every feature, in declaration order.
    pub const ALL: [Self; 7] = [
        Self::Redelivery,
        Self::ExplicitClaims,
        Self::RetrySchedule,
        Self::GroupLag,
        Self::ConsumerListing,
        Self::DurableSends,
        Self::AtomicCrossStreamMoves,
    ];

    const fn bit(self) -> u32 {
        match self {
            Self::Redelivery => 1,
            Self::ExplicitClaims => 1 << 1,
            Self::RetrySchedule => 1 << 2,
            Self::GroupLag => 1 << 3,
            Self::ConsumerListing => 1 << 4,
            Self::DurableSends => 1 << 5,
            Self::AtomicCrossStreamMoves => 1 << 6,
        }
    }

    /// A short name, for messages: `redelivery`, `explicit claims`, ...
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Redelivery => "redelivery",
            Self::ExplicitClaims => "explicit claims",
            Self::RetrySchedule => "retry schedule",
            Self::GroupLag => "group lag",
            Self::ConsumerListing => "consumer listing",
            Self::DurableSends => "durable sends",
            Self::AtomicCrossStreamMoves => "atomic cross-stream moves",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The set of [`Feature`]s a backend supports.
///
/// ```
/// use streams_core::backend::{Capabilities, Feature};
///
/// let caps = Capabilities::all().without(Feature::ExplicitClaims);
/// assert!(caps.supports(Feature::Redelivery));
/// assert!(!caps.supports(Feature::ExplicitClaims));
/// assert_eq!(caps.missing(&[Feature::ExplicitClaims, Feature::GroupLag]), vec![Feature::ExplicitClaims]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities(u32);

impl Capabilities {
    /// No feature at all.
    pub const fn none() -> Self {
        Self(0)
    }

    /// Every feature.
    pub const fn all() -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < Feature::ALL.len() {
            bits |= Feature::ALL[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// These capabilities plus `feature`.
    #[must_use]
    pub const fn with(self, feature: Feature) -> Self {
        Self(self.0 | feature.bit())
    }

    /// These capabilities without `feature`.
    #[must_use]
    pub const fn without(self, feature: Feature) -> Self {
        Self(self.0 & !feature.bit())
    }

    /// Whether `feature` is supported.
    pub const fn supports(self, feature: Feature) -> bool {
        self.0 & feature.bit() != 0
    }

    /// The features of `needed` that are not supported, in order.
    pub fn missing(self, needed: &[Feature]) -> Vec<Feature> {
        needed
            .iter()
            .copied()
            .filter(|f| !self.supports(*f))
            .collect()
    }

    /// The supported features, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.supports(*f))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_behave() {
        let all = Capabilities::all();
        assert_eq!(all.iter().count(), Feature::ALL.len());
        assert_eq!(Capabilities::none().iter().count(), 0);
        let some = Capabilities::none().with(Feature::GroupLag);
        assert!(some.supports(Feature::GroupLag));
        assert!(!some.supports(Feature::Redelivery));
        assert_eq!(format!("{some:?}"), "{GroupLag}");
        assert_eq!(all.without(Feature::GroupLag).with(Feature::GroupLag), all);
        assert!(all.missing(&Feature::ALL).is_empty());
    }
}
