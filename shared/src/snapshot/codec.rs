//! The snapshot's binary encoding, as stored in KV, and its decoder.
//!
//! Layout (format version 2; `v` = LEB128 varint, `s` = string id as `v`, `i` = zigzag `v`):
//!
//! ```text
//! "EGSN" | format u8 = 2 | version: v len, UTF-8
//! strings:       v count, each v len + UTF-8             (each distinct string once)
//! consumers:     v count, each s id, s name, u8 status
//! applications:  v count, each s id, s consumer, s name
//! credentials:   v count, each u8 kind, key, s consumer, u8 flags (1 app, 2 expires,
//!                4 environment), [s app], [i expires_at], [s environment], u8 status,
//!                v n + n × s scope
//!                key: u8 0 + 32 bytes (a SHA-256), or u8 1 + v len + UTF-8 (any other
//!                text: encodes, and the decoder refuses it)
//! plans:         v count, each s id, s tier, s rate_plan
//! subscriptions: v count, each u8 flags (1 pii, 2 canary, 4 valid_from, 8 valid_until,
//!                16 UUID id, 32 priority), id (16 bytes if a canonical lowercase UUID, else s),
//!                s app, s api, s env, s plan, u8 status,
//!                [s canary], [i valid_from], [i valid_until],
//!                v n + n × s version, v n + n × s scope,
//!                v n + n × cidr allow, v n + n × cidr deny, v n + n × (s key, s value)
//! checksum: u64 little-endian, [`checksum`] of every byte before it
//! ```
//!
//! A CIDR is one byte (the prefix length for IPv4, 33 + the prefix length for IPv6) and then
//! only the address bytes the prefix covers (`10.0.0.0/8` is two bytes). Subscriptions are
//! written grouped by (application, API, environment), which the index relies on.
//!
//! [`decode`] trusts nothing: it checks the magic, the format version, the checksum (so a flipped
//! or truncated byte is refused before parsing), then every length, string id, enum value,
//! flag bit and CIDR, refuses duplicate ids and trailing bytes, and never panics. Allocation is
//! bounded by the input size, not by counts the input claims.

use super::index::{
    digest_bytes, fx, hash1, hash3, hash_cred, uuid_bytes, uuid_text, AppRec, ConsumerRec, CredRec,
    PlanRec, Snapshot, SubRec, SubscriptionId, Table, CRED_ALL, CRED_APP, CRED_ENV, CRED_EXPIRES,
    NONE, SUB_ALL, SUB_CANARY, SUB_FROM, SUB_PII, SUB_PRIORITY, SUB_UNTIL, SUB_UUID,
};
use super::model::{
    Cidr, CidrError, ConsumerStatus, CredentialKind, SnapshotDoc, Subscription, SubscriptionStatus,
};
use crate::auth::CredentialStatus;
use std::collections::HashMap;
use std::fmt;

/// The first four bytes of every encoded snapshot.
pub const MAGIC: [u8; 4] = *b"EGSN";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u8 = 2;
const HEADER: usize = MAGIC.len() + 1;
const TRAILER: usize = 8;
const CHECKSUM_SEED: u64 = 0x4547_534e_0000_0001;

/// Why bytes are not a usable snapshot (decoding) or shards do not join
/// ([`super::shard::join`]). `at` is a byte offset in the encoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The input ends inside a value.
    Truncated {
        /// Where more bytes were needed.
        at: usize,
    },
    /// Not an encoded snapshot (the first bytes are not [`MAGIC`]).
    BadMagic,
    /// Written in a layout this build cannot read.
    UnsupportedFormat {
        /// The format version found.
        found: u8,
    },
    /// The checksum trailer does not match the content (corrupted or truncated).
    ChecksumMismatch,
    /// A varint longer than 10 bytes or beyond 64 bits.
    BadVarint {
        /// Its offset.
        at: usize,
    },
    /// A count or length beyond what the index can hold (or than the input can contain).
    TooLarge {
        /// Which count.
        what: &'static str,
        /// Its offset.
        at: usize,
    },
    /// A string is not UTF-8.
    BadUtf8 {
        /// Its offset.
        at: usize,
    },
    /// A string id beyond the string table.
    StringIdOutOfRange {
        /// The id found.
        id: u64,
        /// Its offset.
        at: usize,
    },
    /// An enum byte or flag bits with no meaning.
    BadValue {
        /// Which field.
        what: &'static str,
        /// The byte found.
        value: u8,
        /// Its offset.
        at: usize,
    },
    /// A CIDR with a prefix beyond its family or host bits set.
    BadCidr {
        /// Why.
        reason: CidrError,
        /// Its offset.
        at: usize,
    },
    /// A record the rules forbid (empty version list, metadata keys out of order, an
    /// (application, API, environment) group written in two places).
    BadRecord {
        /// What is wrong.
        what: &'static str,
        /// Its offset (the record's end for group errors).
        at: usize,
    },
    /// Two records of one kind with the same id (credentials: kind and key).
    Duplicate {
        /// Which kind.
        what: &'static str,
        /// The repeated id.
        id: String,
    },
    /// Bytes after the last section.
    TrailingBytes {
        /// Where the extra bytes start.
        at: usize,
    },
    /// A different number of shards than the manifest lists.
    ShardCount {
        /// As the manifest says.
        expected: u32,
        /// As given.
        found: usize,
    },
    /// The joined shards are not as long as the manifest says.
    ShardLength {
        /// As the manifest says.
        expected: u64,
        /// As joined.
        found: u64,
    },
    /// The joined shards' SHA-256 is not the manifest's (a shard was replaced or corrupted,
    /// or shards of two snapshots were mixed).
    ShardDigest,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapshotError::*;
        match self {
            Truncated { at } => write!(f, "truncated at byte {at}"),
            BadMagic => f.write_str("not an encoded snapshot (bad magic)"),
            UnsupportedFormat { found } => write!(
                f,
                "format version {found} is not supported (this build reads {FORMAT_VERSION})"
            ),
            ChecksumMismatch => f.write_str("checksum mismatch (corrupted or truncated)"),
            BadVarint { at } => write!(f, "malformed varint at byte {at}"),
            TooLarge { what, at } => write!(f, "{what} too large at byte {at}"),
            BadUtf8 { at } => write!(f, "string at byte {at} is not UTF-8"),
            StringIdOutOfRange { id, at } => {
                write!(f, "string id {id} out of range at byte {at}")
            }
            BadValue { what, value, at } => write!(f, "bad {what} {value} at byte {at}"),
            BadCidr { reason, at } => write!(f, "bad CIDR at byte {at}: {reason}"),
            BadRecord { what, at } => write!(f, "bad record at byte {at}: {what}"),
            Duplicate { what, id } => write!(f, "duplicate {what} `{id}`"),
            TrailingBytes { at } => write!(f, "unexpected bytes from byte {at}"),
            ShardCount { expected, found } => {
                write!(f, "{found} shards given, the manifest lists {expected}")
            }
            ShardLength { expected, found } => {
                write!(
                    f,
                    "joined shards are {found} bytes, the manifest says {expected}"
                )
            }
            ShardDigest => f.write_str("joined shards do not match the manifest's SHA-256"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The checksum the trailer holds, over every byte before it (a fast 64-bit word hash: any
/// change within one aligned 8-byte word is always detected, others with probability
/// 1 − 2⁻⁶⁴; not a defence against forgery — the shard manifest's SHA-256 is).
pub fn checksum(bytes: &[u8]) -> u64 {
    fx(CHECKSUM_SEED, bytes)
}

// === encode ===

struct Writer<'d> {
    out: Vec<u8>,
    ids: HashMap<&'d str, u32>,
    strings: Vec<&'d str>,
}

impl<'d> Writer<'d> {
    fn v(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.out.push((x as u8) | 0x80);
            x >>= 7;
        }
        self.out.push(x as u8);
    }
    fn i(&mut self, x: i64) {
        self.v(((x << 1) ^ (x >> 63)) as u64);
    }
    fn s(&mut self, s: &'d str) {
        let next = self.strings.len() as u32;
        let id = *self.ids.entry(s).or_insert(next);
        if id == next {
            self.strings.push(s);
        }
        self.v(u64::from(id));
    }
    fn list(&mut self, items: &'d [String]) {
        self.v(items.len() as u64);
        for x in items {
            self.s(x);
        }
    }
    fn cidrs(&mut self, items: &[Cidr]) {
        self.v(items.len() as u64);
        for c in items {
            let (octets, n) = c.octets();
            let head = if n == 4 { c.prefix() } else { 33 + c.prefix() };
            self.out.push(head);
            self.out
                .extend_from_slice(&octets[..(c.prefix() as usize).div_ceil(8)]);
        }
    }
}

/// Encodes a snapshot document. Runs where snapshots are built (the Registry sync), not in
/// the request path.
///
/// Does not validate: run [`super::model::validate`] first (as [`super::from_json`] does). A
/// document breaking its rules still encodes, and the decoder then refuses what the index
/// cannot hold (duplicate ids, an empty version list, a list of more than
/// [`super::model::MAX_LIST_LEN`] entries); a dangling reference decodes and its lookup
/// answers `None`.
pub fn encode(doc: &SnapshotDoc) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::new(),
        ids: HashMap::new(),
        strings: Vec::new(),
    };
    w.v(doc.consumers.len() as u64);
    for c in &doc.consumers {
        w.s(&c.id);
        w.s(&c.name);
        w.out.push(consumer_status_byte(c.status));
    }
    w.v(doc.applications.len() as u64);
    for a in &doc.applications {
        w.s(&a.id);
        w.s(&a.consumer_id);
        w.s(&a.name);
    }
    w.v(doc.credentials.len() as u64);
    for c in &doc.credentials {
        w.out.push(match c.kind {
            CredentialKind::ApiKey => 0,
            CredentialKind::Certificate => 1,
        });
        match digest_bytes(&c.key) {
            Some(digest) => {
                w.out.push(0);
                w.out.extend_from_slice(&digest);
            }
            None => {
                w.out.push(1);
                w.v(c.key.len() as u64);
                w.out.extend_from_slice(c.key.as_bytes());
            }
        }
        w.s(&c.consumer_id);
        let flags = if c.application_id.is_some() {
            CRED_APP
        } else {
            0
        } | if c.expires_at.is_some() {
            CRED_EXPIRES
        } else {
            0
        } | if c.environment.is_some() { CRED_ENV } else { 0 };
        w.out.push(flags);
        if let Some(a) = &c.application_id {
            w.s(a);
        }
        if let Some(e) = c.expires_at {
            w.i(e);
        }
        if let Some(e) = &c.environment {
            w.s(e);
        }
        w.out.push(match c.status {
            CredentialStatus::Active => 0,
            CredentialStatus::Revoked => 1,
            CredentialStatus::Suspended => 2,
        });
        w.list(&c.scopes);
    }
    w.v(doc.plans.len() as u64);
    for p in &doc.plans {
        w.s(&p.id);
        w.s(&p.tier);
        w.s(&p.rate_plan);
    }
    // Grouped by (application, API, environment); stable, so the Registry's order is kept
    // within a group.
    let mut subs: Vec<&Subscription> = doc.subscriptions.iter().collect();
    subs.sort_by(|a, b| {
        (&a.application_id, &a.api, &a.environment).cmp(&(
            &b.application_id,
            &b.api,
            &b.environment,
        ))
    });
    w.v(subs.len() as u64);
    for s in subs {
        let uuid = uuid_bytes(&s.id);
        let flags = if s.flags.pii_access { SUB_PII } else { 0 }
            | if s.flags.canary_group.is_some() {
                SUB_CANARY
            } else {
                0
            }
            | if s.valid_from.is_some() { SUB_FROM } else { 0 }
            | if s.valid_until.is_some() {
                SUB_UNTIL
            } else {
                0
            }
            | if uuid.is_some() { SUB_UUID } else { 0 }
            | if s.flags.priority { SUB_PRIORITY } else { 0 };
        w.out.push(flags);
        match uuid {
            Some(bytes) => w.out.extend_from_slice(&bytes),
            None => w.s(&s.id),
        }
        w.s(&s.application_id);
        w.s(&s.api);
        w.s(&s.environment);
        w.s(&s.plan_id);
        w.out.push(match s.status {
            SubscriptionStatus::Active => 0,
            SubscriptionStatus::Suspended => 1,
            SubscriptionStatus::Expired => 2,
        });
        if let Some(c) = &s.flags.canary_group {
            w.s(c);
        }
        if let Some(t) = s.valid_from {
            w.i(t);
        }
        if let Some(t) = s.valid_until {
            w.i(t);
        }
        w.list(&s.versions);
        w.list(&s.scopes);
        w.cidrs(&s.ip_allow);
        w.cidrs(&s.ip_deny);
        w.v(s.metadata.len() as u64);
        for (k, v) in &s.metadata {
            w.s(k);
            w.s(v);
        }
    }
    let body = std::mem::take(&mut w.out);
    let strings = std::mem::take(&mut w.strings);
    let text: usize = strings.iter().map(|s| s.len() + 2).sum();
    w.out
        .reserve(HEADER + doc.version.len() + 10 + text + body.len() + TRAILER);
    w.out.extend_from_slice(&MAGIC);
    w.out.push(FORMAT_VERSION);
    w.v(doc.version.len() as u64);
    w.out.extend_from_slice(doc.version.as_bytes());
    w.v(strings.len() as u64);
    for s in strings {
        w.v(s.len() as u64);
        w.out.extend_from_slice(s.as_bytes());
    }
    w.out.extend_from_slice(&body);
    let sum = checksum(&w.out);
    w.out.extend_from_slice(&sum.to_le_bytes());
    w.out
}

fn consumer_status_byte(s: ConsumerStatus) -> u8 {
    match s {
        ConsumerStatus::Active => 0,
        ConsumerStatus::Suspended => 1,
    }
}

// === decode ===

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    n_strings: u64,
}

type R<T> = Result<T, SnapshotError>;

impl<'a> Reader<'a> {
    fn byte(&mut self) -> R<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(SnapshotError::Truncated { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn v(&mut self) -> R<u64> {
        let at = self.pos;
        let mut x: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(SnapshotError::BadVarint { at });
            }
            x |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(SnapshotError::BadVarint { at })
    }

    fn i(&mut self) -> R<i64> {
        let z = self.v()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn bytes(&mut self, n: u64) -> R<&'a [u8]> {
        let at = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or(SnapshotError::Truncated { at })?;
        self.pos = end;
        Ok(&self.buf[at..end])
    }

    /// A count of records each at least `min_bytes` long: no more than the rest can hold.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> R<usize> {
        let at = self.pos;
        let n = self.v()?;
        let room = (self.buf.len() - self.pos) / min_bytes.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= room => Ok(n),
            _ => Err(SnapshotError::TooLarge { what, at }),
        }
    }

    /// A list length: fits the index's 16 bits and the rest of the input.
    fn list_len(&mut self, what: &'static str) -> R<u16> {
        let at = self.pos;
        let n = self.count(what, 1)?;
        u16::try_from(n).map_err(|_| SnapshotError::TooLarge { what, at })
    }

    fn s(&mut self) -> R<u32> {
        let at = self.pos;
        let id = self.v()?;
        if id >= self.n_strings {
            return Err(SnapshotError::StringIdOutOfRange { id, at });
        }
        // n_strings ≤ u32::MAX (checked when the table is read).
        Ok(id as u32)
    }

    fn str(&mut self) -> R<&'a str> {
        let n = self.v()?;
        let at = self.pos;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| SnapshotError::BadUtf8 { at })
    }

    fn enum_byte(&mut self, what: &'static str, max: u8) -> R<u8> {
        let at = self.pos;
        let b = self.byte()?;
        if b > max {
            return Err(SnapshotError::BadValue { what, value: b, at });
        }
        Ok(b)
    }

    fn flags(&mut self, what: &'static str, known: u8) -> R<u8> {
        let at = self.pos;
        let b = self.byte()?;
        if b & !known != 0 {
            return Err(SnapshotError::BadValue { what, value: b, at });
        }
        Ok(b)
    }

    fn cidr(&mut self) -> R<Cidr> {
        let at = self.pos;
        let head = self.byte()?;
        let (v6, prefix) = match head {
            0..=32 => (false, head),
            33..=161 => (true, head - 33),
            _ => {
                return Err(SnapshotError::BadCidr {
                    reason: CidrError::BadPrefix,
                    at,
                })
            }
        };
        let n = (prefix as usize).div_ceil(8);
        let mut octets = [0u8; 16];
        octets[..n].copy_from_slice(self.bytes(n as u64)?);
        Cidr::from_octets(v6, octets, prefix)
            .map_err(|reason| SnapshotError::BadCidr { reason, at })
    }
}

/// Decodes and indexes an encoded snapshot. Runs when an isolate activates a new snapshot
/// (not per request); the result is immutable and shared by all requests.
///
/// Errors: any [`SnapshotError`] but the `Shard*` ones; a snapshot that fails to decode must
/// not be activated (keep the previous one). Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] {
        return Err(SnapshotError::BadMagic);
    }
    match bytes.get(MAGIC.len()) {
        None => return Err(SnapshotError::Truncated { at: bytes.len() }),
        Some(&FORMAT_VERSION) => {}
        Some(&found) => return Err(SnapshotError::UnsupportedFormat { found }),
    }
    let Some(body_len) = bytes.len().checked_sub(TRAILER).filter(|&n| n > HEADER) else {
        return Err(SnapshotError::Truncated { at: bytes.len() });
    };
    let (body, trailer) = bytes.split_at(body_len);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(trailer);
    if checksum(body) != u64::from_le_bytes(sum) {
        return Err(SnapshotError::ChecksumMismatch);
    }
    let mut r = Reader {
        buf: body,
        pos: HEADER,
        n_strings: 0,
    };
    let mut snap = Snapshot {
        version: r.str()?.to_owned(),
        ..Snapshot::default()
    };

    // Strings: one pass to size the buffer exactly, one to copy.
    let at = r.pos;
    let n_strings = r.count("string table", 1)?;
    if n_strings >= NONE as usize {
        return Err(SnapshotError::TooLarge {
            what: "string table",
            at,
        });
    }
    let table_start = r.pos;
    let mut total: usize = 0;
    for _ in 0..n_strings {
        let n = r.v()?;
        total = total.saturating_add(r.bytes(n)?.len());
    }
    if total > u32::MAX as usize {
        return Err(SnapshotError::TooLarge {
            what: "string table",
            at,
        });
    }
    r.pos = table_start;
    snap.text.reserve_exact(total);
    snap.ends.reserve_exact(n_strings);
    for _ in 0..n_strings {
        let s = r.str()?;
        snap.text.push_str(s);
        snap.ends.push(snap.text.len() as u32);
    }
    r.n_strings = n_strings as u64;

    let n = r.count("consumers", 3)?;
    snap.consumers.reserve_exact(n);
    for _ in 0..n {
        let id = r.s()?;
        let name = r.s()?;
        let status = match r.enum_byte("consumer status", 1)? {
            0 => ConsumerStatus::Active,
            _ => ConsumerStatus::Suspended,
        };
        snap.consumers.push(ConsumerRec { id, name, status });
    }

    let n = r.count("applications", 3)?;
    snap.applications.reserve_exact(n);
    for _ in 0..n {
        let id = r.s()?;
        let consumer = r.s()?;
        let name = r.s()?;
        snap.applications.push(AppRec { id, consumer, name });
    }

    let n = r.count("credentials", 7)?;
    snap.credentials.reserve_exact(n);
    snap.cred_keys.reserve_exact(n);
    for _ in 0..n {
        let kind = match r.enum_byte("credential kind", 1)? {
            0 => CredentialKind::ApiKey,
            _ => CredentialKind::Certificate,
        };
        let at = r.pos;
        match r.byte()? {
            0 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(r.bytes(32)?);
                snap.cred_keys.push(key);
            }
            _ => {
                return Err(SnapshotError::BadRecord {
                    what: "credential key is not 64 lowercase hex digits (a SHA-256)",
                    at,
                })
            }
        }
        let consumer = r.s()?;
        let flags = r.flags("credential flags", CRED_ALL)?;
        let app = if flags & CRED_APP != 0 { r.s()? } else { NONE };
        let expires_at = if flags & CRED_EXPIRES != 0 { r.i()? } else { 0 };
        let env = if flags & CRED_ENV != 0 { r.s()? } else { NONE };
        let status = match r.enum_byte("credential status", 2)? {
            0 => CredentialStatus::Active,
            1 => CredentialStatus::Revoked,
            _ => CredentialStatus::Suspended,
        };
        let (scopes, n_scopes) = read_ids(&mut r, &mut snap.lists, "credential scopes")?;
        snap.credentials.push(CredRec {
            consumer,
            app,
            env,
            expires_at,
            scopes,
            n_scopes,
            kind,
            status,
            flags,
        });
    }

    let n = r.count("plans", 3)?;
    snap.plans.reserve_exact(n);
    for _ in 0..n {
        let id = r.s()?;
        let tier = r.s()?;
        let rate_plan = r.s()?;
        snap.plans.push(PlanRec {
            id,
            tier,
            rate_plan,
        });
    }

    let n = r.count("subscriptions", 12)?;
    snap.subscriptions.reserve_exact(n);
    snap.sub_uuids.reserve_exact(n);
    for _ in 0..n {
        let rec = read_subscription(&mut r, &mut snap)?;
        snap.subscriptions.push(rec);
    }
    if r.pos != body.len() {
        return Err(SnapshotError::TrailingBytes { at: r.pos });
    }
    snap.lists.shrink_to_fit();
    snap.sub_uuids.shrink_to_fit();
    snap.cidrs.shrink_to_fit();
    build_tables(&mut snap, body.len())?;
    Ok(snap)
}

fn list_start(r: &Reader<'_>, len: usize, what: &'static str) -> R<u32> {
    u32::try_from(len).map_err(|_| SnapshotError::TooLarge { what, at: r.pos })
}

fn read_ids(r: &mut Reader<'_>, lists: &mut Vec<u32>, what: &'static str) -> R<(u32, u16)> {
    let start = list_start(r, lists.len(), what)?;
    let n = r.list_len(what)?;
    for _ in 0..n {
        lists.push(r.s()?);
    }
    Ok((start, n))
}

fn read_subscription(r: &mut Reader<'_>, snap: &mut Snapshot) -> R<SubRec> {
    let flags = r.flags("subscription flags", SUB_ALL)?;
    let id = if flags & SUB_UUID != 0 {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(r.bytes(16)?);
        let i = list_start(r, snap.sub_uuids.len(), "subscriptions")?;
        snap.sub_uuids.push(bytes);
        i
    } else {
        r.s()?
    };
    let app = r.s()?;
    let api = r.s()?;
    let env = r.s()?;
    let plan = r.s()?;
    let status = match r.enum_byte("subscription status", 2)? {
        0 => SubscriptionStatus::Active,
        1 => SubscriptionStatus::Suspended,
        _ => SubscriptionStatus::Expired,
    };
    let canary = if flags & SUB_CANARY != 0 {
        r.s()?
    } else {
        NONE
    };
    let mut time = |on: u8| -> R<u32> {
        if flags & on == 0 {
            return Ok(0);
        }
        let at = r.pos;
        u32::try_from(r.i()?).map_err(|_| SnapshotError::BadRecord {
            what: "validity time outside 1970..2106",
            at,
        })
    };
    let valid_from = time(SUB_FROM)?;
    let valid_until = time(SUB_UNTIL)?;
    let at = r.pos;
    let (lists, n_versions) = read_ids(r, &mut snap.lists, "versions")?;
    if n_versions == 0 {
        return Err(SnapshotError::BadRecord {
            what: "empty version list",
            at,
        });
    }
    let (_, n_scopes) = read_ids(r, &mut snap.lists, "scopes")?;
    let cidrs = list_start(r, snap.cidrs.len(), "CIDR lists")?;
    let n_allow = r.list_len("ip_allow")?;
    for _ in 0..n_allow {
        snap.cidrs.push(r.cidr()?);
    }
    let n_deny = r.list_len("ip_deny")?;
    for _ in 0..n_deny {
        snap.cidrs.push(r.cidr()?);
    }
    let n_meta = r.list_len("metadata")?;
    let mut prev: Option<u32> = None;
    for _ in 0..n_meta {
        let at = r.pos;
        let k = r.s()?;
        if prev.is_some_and(|p| snap.s(p) >= snap.s(k)) {
            return Err(SnapshotError::BadRecord {
                what: "metadata keys not in ascending order",
                at,
            });
        }
        prev = Some(k);
        snap.lists.push(k);
        snap.lists.push(r.s()?);
    }
    if canary != NONE {
        snap.lists.push(canary);
    }
    // Every list start must stay addressable.
    list_start(r, snap.lists.len(), "lists")?;
    list_start(r, snap.cidrs.len(), "CIDR lists")?;
    Ok(SubRec {
        id,
        app,
        api,
        env,
        plan,
        valid_from,
        valid_until,
        lists,
        cidrs,
        n_versions,
        n_scopes,
        n_meta,
        n_allow,
        n_deny,
        status,
        flags,
    })
}

fn build_tables(snap: &mut Snapshot, end: usize) -> R<()> {
    fn dup(what: &'static str, id: &str) -> SnapshotError {
        SnapshotError::Duplicate {
            what,
            id: id.to_string(),
        }
    }
    let s = &*snap;

    let mut t = Table::with_records(s.consumers.len());
    for (i, rec) in s.consumers.iter().enumerate() {
        let id = s.s(rec.id);
        if t.insert(hash1(id), i as u32, |j| {
            s.s(s.consumers[j as usize].id) == id
        })
        .is_some()
        {
            return Err(dup("consumer", id));
        }
    }
    let consumer_table = t;

    let mut t = Table::with_records(s.applications.len());
    for (i, rec) in s.applications.iter().enumerate() {
        let id = s.s(rec.id);
        if t.insert(hash1(id), i as u32, |j| {
            s.s(s.applications[j as usize].id) == id
        })
        .is_some()
        {
            return Err(dup("application", id));
        }
    }
    let app_table = t;

    let mut t = Table::with_records(s.credentials.len());
    for (i, (rec, key)) in s.credentials.iter().zip(&s.cred_keys).enumerate() {
        let same =
            |j: u32| s.credentials[j as usize].kind == rec.kind && s.cred_keys[j as usize] == *key;
        if t.insert(hash_cred(rec.kind, key), i as u32, same).is_some() {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            return Err(dup("credential", &hex));
        }
    }
    let cred_table = t;

    let mut t = Table::with_records(s.plans.len());
    for (i, rec) in s.plans.iter().enumerate() {
        let id = s.s(rec.id);
        if t.insert(hash1(id), i as u32, |j| s.s(s.plans[j as usize].id) == id)
            .is_some()
        {
            return Err(dup("plan", id));
        }
    }
    let plan_table = t;

    let sub_id = |rec: &SubRec| -> SubscriptionId<'_> {
        if rec.flags & SUB_UUID != 0 {
            let bytes = s
                .sub_uuids
                .get(rec.id as usize)
                .copied()
                .unwrap_or_default();
            SubscriptionId::Uuid(uuid_text(&bytes))
        } else {
            SubscriptionId::Text(s.s(rec.id))
        }
    };
    let mut t = Table::with_records(s.subscriptions.len());
    for (i, rec) in s.subscriptions.iter().enumerate() {
        let id = sub_id(rec);
        if t.insert(hash1(&id), i as u32, |j| {
            *sub_id(&s.subscriptions[j as usize]) == *id
        })
        .is_some()
        {
            return Err(dup("subscription", &id));
        }
    }
    // Checked at decode only: the index keeps no table by subscription id.
    drop(t);

    // Groups: runs of equal (application, API, environment); a key seen in two runs means the
    // subscriptions were not written grouped.
    let mut starts: Vec<u32> = Vec::new();
    let mut prev: Option<(u32, u32, u32)> = None;
    for (i, rec) in s.subscriptions.iter().enumerate() {
        let key = (rec.app, rec.api, rec.env);
        if prev != Some(key) {
            starts.push(i as u32);
            prev = Some(key);
        }
    }
    let mut t = Table::with_records(starts.len());
    for &start in &starts {
        let rec = &s.subscriptions[start as usize];
        let (a, p, e) = (s.s(rec.app), s.s(rec.api), s.s(rec.env));
        let same = |other: u32| {
            let other = &s.subscriptions[other as usize];
            s.s(other.app) == a && s.s(other.api) == p && s.s(other.env) == e
        };
        if t.insert(hash3(a, p, e), start, same).is_some() {
            return Err(SnapshotError::BadRecord {
                what: "subscriptions of one application, API and environment not contiguous",
                at: end,
            });
        }
    }
    drop(starts);
    let group_table = t;

    snap.consumer_table = consumer_table;
    snap.app_table = app_table;
    snap.cred_table = cred_table;
    snap.plan_table = plan_table;
    snap.group_table = group_table;
    Ok(())
}
