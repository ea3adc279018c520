//! The Registry snapshot: consumers, applications, credentials, plans and subscriptions, held
//! in the isolate so authorization decisions take microseconds and keep working when the
//! Registry is down.
//!
//! Life cycle: the Registry sync builds a [`SnapshotDoc`] (from JSON with [`from_json`]),
//! [`encode`]s it, splits it with [`shard()`] if it exceeds [`KV_VALUE_LIMIT`] and writes it to
//! KV. An isolate reads it back, [`join`]s and [`decode`]s it into a [`Snapshot`] — an
//! immutable index answering [`Snapshot::subscriptions_for`], [`Snapshot::credential`] and the
//! id lookups without allocating. A snapshot that fails to decode is never activated
//! ([`SnapshotStore`] keeps the isolate's copy current).
//!
//! [`generate`] builds realistic fixtures of any size for tests and benchmarks.

pub mod codec;
mod generate;
mod index;
pub mod model;
pub mod shard;
mod store;

pub use codec::{decode, encode, SnapshotError};
pub use generate::generate;
pub use index::{
    ApplicationView, ConsumerView, CredentialView, PlanView, Snapshot, SnapshotLen, SubscriptionId,
    SubscriptionView,
};
pub use model::{
    from_json, validate, Application, Cidr, CidrError, Consumer, ConsumerStatus, Credential,
    CredentialKind, Plan, SnapshotDoc, Subscription, SubscriptionFlags, SubscriptionStatus,
};
pub use shard::{join, read_shards, shard, ShardManifest, ShardReadError, KV_VALUE_LIMIT};
pub use store::{
    SnapshotMarker, SnapshotRefresh, SnapshotStore, MANIFEST_KEY, SERVING_KEY, SHARD_PREFIX,
};
