//! The decoded snapshot held by an isolate: interned strings, flat record arrays, and
//! open-addressing hash tables of record indices.
//!
//! Memory layout (no heap allocation per record): every string lives once in one `String`
//! (`text`), addressed by a string id; records are fixed-size structs of string ids in one
//! `Vec` per kind; per-record lists (versions, scopes, metadata pairs) are ranges of one shared
//! `Vec<u32>` of string ids, CIDR lists ranges of one shared `Vec<Cidr>`. Lookups hash the
//! query string(s) once and compare against the candidate record's strings.
//!
//! Subscriptions are stored sorted by (application, API, environment), so all subscriptions
//! of one key are contiguous and a lookup returns a slice.

use super::model::{
    Application, Cidr, Consumer, ConsumerStatus, Credential, CredentialKind, Plan, SnapshotDoc,
    Subscription, SubscriptionFlags, SubscriptionStatus,
};
use crate::auth::CredentialStatus;
use std::mem::size_of;

/// "No string" in an optional string-id field.
pub(super) const NONE: u32 = u32::MAX;

// Subscription flag bits, shared by the wire format and the index.
pub(super) const SUB_PII: u8 = 1;
pub(super) const SUB_CANARY: u8 = 2;
pub(super) const SUB_FROM: u8 = 4;
pub(super) const SUB_UNTIL: u8 = 8;
/// The id is a canonical lowercase UUID, stored as 16 bytes (`Snapshot::sub_uuids`).
pub(super) const SUB_UUID: u8 = 16;
pub(super) const SUB_PRIORITY: u8 = 32;
pub(super) const SUB_ALL: u8 =
    SUB_PII | SUB_CANARY | SUB_FROM | SUB_UNTIL | SUB_UUID | SUB_PRIORITY;
// Credential flag bits.
pub(super) const CRED_APP: u8 = 1;
pub(super) const CRED_EXPIRES: u8 = 2;
pub(super) const CRED_ENV: u8 = 4;
pub(super) const CRED_ALL: u8 = CRED_APP | CRED_EXPIRES | CRED_ENV;

#[derive(Debug, Clone)]
pub(super) struct ConsumerRec {
    pub id: u32,
    pub name: u32,
    pub status: ConsumerStatus,
}

#[derive(Debug, Clone)]
pub(super) struct AppRec {
    pub id: u32,
    pub consumer: u32,
    pub name: u32,
}

/// A credential; its key is `Snapshot::cred_keys` at the same index.
#[derive(Debug, Clone)]
pub(super) struct CredRec {
    pub consumer: u32,
    /// [`NONE`] when the credential is not bound to an application.
    pub app: u32,
    /// [`NONE`] unless `flags & CRED_ENV`.
    pub env: u32,
    pub expires_at: i64,
    pub scopes: u32,
    pub n_scopes: u16,
    pub kind: CredentialKind,
    pub status: CredentialStatus,
    pub flags: u8,
}

#[derive(Debug, Clone)]
pub(super) struct PlanRec {
    pub id: u32,
    pub tier: u32,
    pub rate_plan: u32,
}

#[derive(Debug, Clone)]
pub(super) struct SubRec {
    /// An index in `Snapshot::sub_uuids` if `flags & SUB_UUID`, else a string id.
    pub id: u32,
    pub app: u32,
    pub api: u32,
    pub env: u32,
    pub plan: u32,
    /// Unix seconds; meaningful only with `SUB_FROM` / `SUB_UNTIL`.
    pub valid_from: u32,
    pub valid_until: u32,
    /// Start in `Snapshot::lists`: versions, then scopes, then metadata (key, value) pairs,
    /// then the canary group if `flags & SUB_CANARY`.
    pub lists: u32,
    /// Start in `Snapshot::cidrs`: allow, then deny.
    pub cidrs: u32,
    pub n_versions: u16,
    pub n_scopes: u16,
    pub n_meta: u16,
    pub n_allow: u16,
    pub n_deny: u16,
    pub status: SubscriptionStatus,
    pub flags: u8,
}

/// An open-addressing hash table of record indices (linear probing, load ≤ 2/3). The key is
/// not stored: a probe compares the query against the record the slot points to. The home
/// slot is the hash's high bits scaled to the table size (no power-of-two rounding, so the
/// table is 1.5 slots per record, not up to 4).
#[derive(Debug, Default)]
pub(super) struct Table {
    slots: Vec<u32>,
}

impl Table {
    pub fn with_records(n: usize) -> Table {
        Table {
            slots: vec![NONE; n + n / 2 + 1],
        }
    }

    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// Inserts `idx` unless `same(existing)` holds for a record already there; returns that
    /// existing index.
    pub fn insert(&mut self, hash: u64, idx: u32, same: impl Fn(u32) -> bool) -> Option<u32> {
        let mut i = self.home(hash);
        loop {
            match self.slots[i] {
                NONE => {
                    self.slots[i] = idx;
                    return None;
                }
                other if same(other) => return Some(other),
                _ => i = self.next(i),
            }
        }
    }

    pub fn find(&self, hash: u64, same: impl Fn(u32) -> bool) -> Option<u32> {
        let mut i = self.home(hash);
        loop {
            match *self.slots.get(i)? {
                NONE => return None,
                idx if same(idx) => return Some(idx),
                _ => i = self.next(i),
            }
        }
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * size_of::<u32>()
    }
}

const K: u64 = 0x517c_c1b7_2722_0a95;

/// A fast, non-cryptographic hash (FxHash-style word loop). Each step is a bijection of the
/// state for a fixed word and of the word for a fixed state, so changing any single 8-byte
/// word of the input always changes the result; used for the table hashes and the format's
/// checksum.
pub(super) fn fx(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K)
}

/// Spreads the high bits into the low ones (tables index by the low bits).
fn finish(h: u64) -> u64 {
    (h ^ (h >> 32)).wrapping_mul(K) ^ (h >> 29)
}

pub(super) fn hash1(s: &str) -> u64 {
    finish(fx(0, s.as_bytes()))
}

pub(super) fn hash_cred(kind: CredentialKind, key: &[u8; 32]) -> u64 {
    finish(fx(kind as u64 + 1, key))
}

/// The canonical text of a UUID stored as 16 bytes: lowercase, hyphenated.
pub(super) fn uuid_text(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut o = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            o += 1;
        }
        out[o] = HEX[usize::from(b >> 4)];
        out[o + 1] = HEX[usize::from(b & 15)];
        o += 2;
    }
    out
}

/// The 16 bytes of `s` if it is a canonical lowercase hyphenated UUID (so [`uuid_text`]
/// gives `s` back exactly).
pub(super) fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().filter(|&&c| c != b'-');
    for o in &mut out {
        let hi = lower_hex(*digits.next()?)?;
        let lo = lower_hex(*digits.next()?)?;
        *o = hi << 4 | lo;
    }
    Some(out)
}

/// The 32 bytes of a 64-digit lowercase hex string (a SHA-256 as the snapshot writes it).
pub(crate) fn digest_bytes(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = lower_hex(pair[0])? << 4 | lower_hex(pair[1])?;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

pub(super) fn hash3(a: &str, b: &str, c: &str) -> u64 {
    finish(fx(fx(fx(0, a.as_bytes()), b.as_bytes()), c.as_bytes()))
}

/// A decoded Registry snapshot, ready for lookups. Built by [`super::codec::decode`]; immutable.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(super) version: String,
    /// All strings, concatenated.
    pub(super) text: String,
    /// End offset in `text` of each string id.
    pub(super) ends: Vec<u32>,
    pub(super) consumers: Vec<ConsumerRec>,
    pub(super) applications: Vec<AppRec>,
    pub(super) credentials: Vec<CredRec>,
    /// SHA-256 key of each credential, by credential index.
    pub(super) cred_keys: Vec<[u8; 32]>,
    pub(super) plans: Vec<PlanRec>,
    pub(super) subscriptions: Vec<SubRec>,
    /// Subscription ids that are canonical UUIDs, 16 bytes each.
    pub(super) sub_uuids: Vec<[u8; 16]>,
    pub(super) lists: Vec<u32>,
    pub(super) cidrs: Vec<Cidr>,
    pub(super) consumer_table: Table,
    pub(super) app_table: Table,
    pub(super) cred_table: Table,
    pub(super) plan_table: Table,
    /// Index in `subscriptions` of the first record of each (application, API, environment)
    /// group; the group runs while those three string ids stay the same.
    pub(super) group_table: Table,
}

/// Record counts of a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLen {
    /// Consumers.
    pub consumers: usize,
    /// Applications.
    pub applications: usize,
    /// Credentials.
    pub credentials: usize,
    /// Plans.
    pub plans: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Distinct strings.
    pub strings: usize,
}

impl Snapshot {
    /// The string with id `id`; ids are checked at decode, so "" only for [`NONE`].
    pub(super) fn s(&self, id: u32) -> &str {
        let i = id as usize;
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(i).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }

    fn ids(&self, start: u32, len: u16) -> &[u32] {
        let start = start as usize;
        self.lists
            .get(start..start + len as usize)
            .unwrap_or_default()
    }

    /// The Registry's name for this snapshot ([`SnapshotDoc::version`]).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Record counts.
    pub fn len(&self) -> SnapshotLen {
        SnapshotLen {
            consumers: self.consumers.len(),
            applications: self.applications.len(),
            credentials: self.credentials.len(),
            plans: self.plans.len(),
            subscriptions: self.subscriptions.len(),
            strings: self.ends.len(),
        }
    }

    /// True if the snapshot holds no records at all.
    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
            && self.applications.is_empty()
            && self.credentials.is_empty()
            && self.plans.is_empty()
            && self.subscriptions.is_empty()
    }

    /// Heap bytes held (capacities of every buffer, plus the struct itself): what the
    /// snapshot costs the isolate, excluding allocator overhead (a few bytes per buffer).
    pub fn memory_bytes(&self) -> usize {
        fn v<T>(x: &Vec<T>) -> usize {
            x.capacity() * size_of::<T>()
        }
        size_of::<Snapshot>()
            + self.version.capacity()
            + self.text.capacity()
            + v(&self.ends)
            + v(&self.consumers)
            + v(&self.applications)
            + v(&self.credentials)
            + v(&self.cred_keys)
            + v(&self.plans)
            + v(&self.subscriptions)
            + v(&self.sub_uuids)
            + v(&self.lists)
            + v(&self.cidrs)
            + self.consumer_table.bytes()
            + self.app_table.bytes()
            + self.cred_table.bytes()
            + self.plan_table.bytes()
            + self.group_table.bytes()
    }

    /// The subscriptions of `application_id` to `api` in `environment`, in the Registry's
    /// order; empty if there are none. Runs per request: one hash and one probe, no allocation.
    /// Callers still check status, validity window, version and IP lists.
    pub fn subscriptions_for<'a>(
        &'a self,
        application_id: &str,
        api: &str,
        environment: &str,
    ) -> impl ExactSizeIterator<Item = SubscriptionView<'a>> + 'a {
        let h = hash3(application_id, api, environment);
        let start = self.group_table.find(h, |i| {
            self.subscriptions.get(i as usize).is_some_and(|r| {
                self.s(r.app) == application_id
                    && self.s(r.api) == api
                    && self.s(r.env) == environment
            })
        });
        let range = start
            .and_then(|i| self.subscriptions.get(i as usize..))
            .map(|from| {
                let len = from.first().map_or(0, |first| {
                    from.iter()
                        .take_while(|r| {
                            r.app == first.app && r.api == first.api && r.env == first.env
                        })
                        .count()
                });
                &from[..len]
            })
            .unwrap_or_default();
        range
            .iter()
            .map(move |rec| SubscriptionView { snap: self, rec })
    }

    /// The subscription with this id. A linear scan (no index is kept for it, to save
    /// memory): for tooling and tests, not the request path.
    pub fn subscription(&self, id: &str) -> Option<SubscriptionView<'_>> {
        self.subscriptions().find(|s| s.id() == id)
    }

    /// Every subscription, grouped by (application, API, environment).
    pub fn subscriptions(&self) -> impl ExactSizeIterator<Item = SubscriptionView<'_>> {
        self.subscriptions
            .iter()
            .map(move |rec| SubscriptionView { snap: self, rec })
    }

    /// The credential of this kind with this key (hex SHA-256 of the API key, or the
    /// certificate fingerprint, lowercase); None also when `key` is not 64 lowercase hex
    /// digits.
    pub fn credential(&self, kind: CredentialKind, key: &str) -> Option<CredentialView<'_>> {
        self.credential_by_digest(kind, &digest_bytes(key)?)
    }

    /// The credential of this kind whose key is this SHA-256 digest. Runs per request: one
    /// hash and a probe, no allocation.
    pub fn credential_by_digest(
        &self,
        kind: CredentialKind,
        digest: &[u8; 32],
    ) -> Option<CredentialView<'_>> {
        let i = self.cred_table.find(hash_cred(kind, digest), |i| {
            self.credentials
                .get(i as usize)
                .is_some_and(|r| r.kind == kind)
                && self.cred_keys.get(i as usize) == Some(digest)
        })?;
        Some(CredentialView {
            snap: self,
            rec: self.credentials.get(i as usize)?,
            key: self.cred_keys.get(i as usize)?,
        })
    }

    /// The consumer with this id.
    pub fn consumer(&self, id: &str) -> Option<ConsumerView<'_>> {
        let i = self.consumer_table.find(hash1(id), |i| {
            self.consumers
                .get(i as usize)
                .is_some_and(|r| self.s(r.id) == id)
        })?;
        Some(ConsumerView {
            snap: self,
            rec: self.consumers.get(i as usize)?,
        })
    }

    /// The application with this id.
    pub fn application(&self, id: &str) -> Option<ApplicationView<'_>> {
        let i = self.app_table.find(hash1(id), |i| {
            self.applications
                .get(i as usize)
                .is_some_and(|r| self.s(r.id) == id)
        })?;
        Some(ApplicationView {
            snap: self,
            rec: self.applications.get(i as usize)?,
        })
    }

    /// The plan with this id.
    pub fn plan(&self, id: &str) -> Option<PlanView<'_>> {
        let i = self.plan_table.find(hash1(id), |i| {
            self.plans
                .get(i as usize)
                .is_some_and(|r| self.s(r.id) == id)
        })?;
        Some(PlanView {
            snap: self,
            rec: self.plans.get(i as usize)?,
        })
    }

    /// Rebuilds the document (subscriptions in index order, i.e. grouped by application, API
    /// and environment). For tests and tooling; allocates everything.
    pub fn to_doc(&self) -> SnapshotDoc {
        SnapshotDoc {
            version: self.version.clone(),
            consumers: self
                .consumers
                .iter()
                .map(|rec| ConsumerView { snap: self, rec }.to_model())
                .collect(),
            applications: self
                .applications
                .iter()
                .map(|rec| ApplicationView { snap: self, rec }.to_model())
                .collect(),
            credentials: self
                .credentials
                .iter()
                .zip(&self.cred_keys)
                .map(|(rec, key)| {
                    CredentialView {
                        snap: self,
                        rec,
                        key,
                    }
                    .to_model()
                })
                .collect(),
            plans: self
                .plans
                .iter()
                .map(|rec| PlanView { snap: self, rec }.to_model())
                .collect(),
            subscriptions: self.subscriptions().map(|s| s.to_model()).collect(),
        }
    }
}

// === views ===

/// A consumer in a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct ConsumerView<'a> {
    snap: &'a Snapshot,
    rec: &'a ConsumerRec,
}

impl<'a> ConsumerView<'a> {
    /// Its id.
    pub fn id(&self) -> &'a str {
        self.snap.s(self.rec.id)
    }
    /// Its display name.
    pub fn name(&self) -> &'a str {
        self.snap.s(self.rec.name)
    }
    /// Whether it may call anything.
    pub fn status(&self) -> ConsumerStatus {
        self.rec.status
    }
    /// An owned copy (allocates).
    pub fn to_model(&self) -> Consumer {
        Consumer {
            id: self.id().into(),
            name: self.name().into(),
            status: self.status(),
        }
    }
}

/// An application in a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct ApplicationView<'a> {
    snap: &'a Snapshot,
    rec: &'a AppRec,
}

impl<'a> ApplicationView<'a> {
    /// Its id.
    pub fn id(&self) -> &'a str {
        self.snap.s(self.rec.id)
    }
    /// The owning consumer's id.
    pub fn consumer_id(&self) -> &'a str {
        self.snap.s(self.rec.consumer)
    }
    /// The owning consumer (None if the snapshot was encoded without validation and the
    /// reference dangles).
    pub fn consumer(&self) -> Option<ConsumerView<'a>> {
        self.snap.consumer(self.consumer_id())
    }
    /// Its display name.
    pub fn name(&self) -> &'a str {
        self.snap.s(self.rec.name)
    }
    /// An owned copy (allocates).
    pub fn to_model(&self) -> Application {
        Application {
            id: self.id().into(),
            consumer_id: self.consumer_id().into(),
            name: self.name().into(),
        }
    }
}

/// A credential in a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct CredentialView<'a> {
    snap: &'a Snapshot,
    rec: &'a CredRec,
    key: &'a [u8; 32],
}

impl<'a> CredentialView<'a> {
    /// API key or certificate.
    pub fn kind(&self) -> CredentialKind {
        self.rec.kind
    }
    /// Its key: the SHA-256 digest.
    pub fn key_digest(&self) -> &'a [u8; 32] {
        self.key
    }
    /// Its key as 64 lowercase hex digits (allocates).
    pub fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// The consumer it belongs to.
    pub fn consumer_id(&self) -> &'a str {
        self.snap.s(self.rec.consumer)
    }
    /// The application it was issued to.
    pub fn application_id(&self) -> Option<&'a str> {
        (self.rec.flags & CRED_APP != 0).then(|| self.snap.s(self.rec.app))
    }
    /// Whether it may be used.
    pub fn status(&self) -> CredentialStatus {
        self.rec.status
    }
    /// Unix seconds after which it is expired.
    pub fn expires_at(&self) -> Option<i64> {
        (self.rec.flags & CRED_EXPIRES != 0).then_some(self.rec.expires_at)
    }
    /// The environment it is for.
    pub fn environment(&self) -> Option<&'a str> {
        (self.rec.flags & CRED_ENV != 0).then(|| self.snap.s(self.rec.env))
    }
    /// Scopes granted with it.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let snap = self.snap;
        snap.ids(self.rec.scopes, self.rec.n_scopes)
            .iter()
            .map(move |&id| snap.s(id))
    }
    /// An owned copy (allocates).
    pub fn to_model(&self) -> Credential {
        Credential {
            kind: self.kind(),
            key: self.key_hex(),
            consumer_id: self.consumer_id().into(),
            application_id: self.application_id().map(Into::into),
            status: self.status(),
            expires_at: self.expires_at(),
            scopes: self.scopes().map(Into::into).collect(),
            environment: self.environment().map(Into::into),
        }
    }
}

/// A plan in a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct PlanView<'a> {
    snap: &'a Snapshot,
    rec: &'a PlanRec,
}

impl<'a> PlanView<'a> {
    /// Its id.
    pub fn id(&self) -> &'a str {
        self.snap.s(self.rec.id)
    }
    /// Its tier.
    pub fn tier(&self) -> &'a str {
        self.snap.s(self.rec.tier)
    }
    /// Its rate plan's name.
    pub fn rate_plan(&self) -> &'a str {
        self.snap.s(self.rec.rate_plan)
    }
    /// An owned copy (allocates).
    pub fn to_model(&self) -> Plan {
        Plan {
            id: self.id().into(),
            tier: self.tier().into(),
            rate_plan: self.rate_plan().into(),
        }
    }
}

/// A subscription in a [`Snapshot`]. Accessors borrow from the snapshot and do not allocate.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionView<'a> {
    snap: &'a Snapshot,
    rec: &'a SubRec,
}

impl<'a> SubscriptionView<'a> {
    /// Its id (UUIDs are kept as 16 bytes and spelled out here, without allocating).
    pub fn id(&self) -> SubscriptionId<'a> {
        if self.rec.flags & SUB_UUID != 0 {
            let bytes = self.snap.sub_uuids.get(self.rec.id as usize);
            SubscriptionId::Uuid(bytes.map_or([b'0'; 36], uuid_text))
        } else {
            SubscriptionId::Text(self.snap.s(self.rec.id))
        }
    }
    /// The subscribed application's id.
    pub fn application_id(&self) -> &'a str {
        self.snap.s(self.rec.app)
    }
    /// The API's name.
    pub fn api(&self) -> &'a str {
        self.snap.s(self.rec.api)
    }
    /// The versions covered (`*` covers all).
    pub fn versions(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let snap = self.snap;
        snap.ids(self.rec.lists, self.rec.n_versions)
            .iter()
            .map(move |&id| snap.s(id))
    }
    /// Whether it covers `version` (listed, or `*` listed).
    pub fn covers_version(&self, version: &str) -> bool {
        self.versions().any(|v| v == "*" || v == version)
    }
    /// The environment.
    pub fn environment(&self) -> &'a str {
        self.snap.s(self.rec.env)
    }
    /// The plan's id.
    pub fn plan_id(&self) -> &'a str {
        self.snap.s(self.rec.plan)
    }
    /// The plan (None if the reference dangles).
    pub fn plan(&self) -> Option<PlanView<'a>> {
        self.snap.plan(self.plan_id())
    }
    /// Whether it grants access.
    pub fn status(&self) -> SubscriptionStatus {
        self.rec.status
    }
    /// Unix seconds from which it is valid.
    pub fn valid_from(&self) -> Option<i64> {
        (self.rec.flags & SUB_FROM != 0).then_some(i64::from(self.rec.valid_from))
    }
    /// Unix seconds from which it is no longer valid.
    pub fn valid_until(&self) -> Option<i64> {
        (self.rec.flags & SUB_UNTIL != 0).then_some(i64::from(self.rec.valid_until))
    }
    /// Scopes it grants.
    pub fn scopes(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let snap = self.snap;
        let start = self.rec.lists + u32::from(self.rec.n_versions);
        snap.ids(start, self.rec.n_scopes)
            .iter()
            .map(move |&id| snap.s(id))
    }
    fn cidr_slice(&self, skip: u16, len: u16) -> &'a [Cidr] {
        let start = self.rec.cidrs as usize + skip as usize;
        self.snap
            .cidrs
            .get(start..start + len as usize)
            .unwrap_or_default()
    }
    /// Networks allowed to use it (empty: any).
    pub fn ip_allow(&self) -> &'a [Cidr] {
        self.cidr_slice(0, self.rec.n_allow)
    }
    /// Networks never allowed to use it.
    pub fn ip_deny(&self) -> &'a [Cidr] {
        self.cidr_slice(self.rec.n_allow, self.rec.n_deny)
    }
    /// Its canary group.
    pub fn canary_group(&self) -> Option<&'a str> {
        if self.rec.flags & SUB_CANARY == 0 {
            return None;
        }
        let at = self.rec.lists
            + u32::from(self.rec.n_versions)
            + u32::from(self.rec.n_scopes)
            + 2 * u32::from(self.rec.n_meta);
        self.snap.ids(at, 1).first().map(|&id| self.snap.s(id))
    }
    /// Whether it may receive personal data.
    pub fn pii_access(&self) -> bool {
        self.rec.flags & SUB_PII != 0
    }
    /// Whether rate limits skip it.
    pub fn priority(&self) -> bool {
        self.rec.flags & SUB_PRIORITY != 0
    }
    /// Its metadata, sorted by key.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let snap = self.snap;
        let start = self.rec.lists + u32::from(self.rec.n_versions) + u32::from(self.rec.n_scopes);
        let len = self.rec.n_meta.saturating_mul(2);
        snap.ids(start, len)
            .chunks_exact(2)
            .map(move |kv| (snap.s(kv[0]), snap.s(kv[1])))
    }
    /// The metadata value under `key`.
    pub fn metadata_get(&self, key: &str) -> Option<&'a str> {
        self.metadata().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    /// An owned copy (allocates).
    pub fn to_model(&self) -> Subscription {
        Subscription {
            id: self.id().to_string(),
            application_id: self.application_id().into(),
            api: self.api().into(),
            versions: self.versions().map(Into::into).collect(),
            environment: self.environment().into(),
            plan_id: self.plan_id().into(),
            status: self.status(),
            valid_from: self.valid_from(),
            valid_until: self.valid_until(),
            scopes: self.scopes().map(Into::into).collect(),
            ip_allow: self.ip_allow().to_vec(),
            ip_deny: self.ip_deny().to_vec(),
            flags: SubscriptionFlags {
                canary_group: self.canary_group().map(Into::into),
                pii_access: self.pii_access(),
                priority: self.priority(),
            },
            metadata: self
                .metadata()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A subscription's id as [`SubscriptionView::id`] returns it: borrowed text, or a UUID
/// spelled out in place. Derefs to `str`.
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionId<'a> {
    /// Kept as text in the snapshot.
    Text(&'a str),
    /// Kept as 16 bytes; this is its canonical spelling (ASCII).
    Uuid([u8; 36]),
}

impl std::ops::Deref for SubscriptionId<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            SubscriptionId::Text(s) => s,
            SubscriptionId::Uuid(b) => std::str::from_utf8(b).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for SubscriptionId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl PartialEq<str> for SubscriptionId<'_> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for SubscriptionId<'_> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl PartialEq<String> for SubscriptionId<'_> {
    fn eq(&self, other: &String) -> bool {
        **self == **other
    }
}
