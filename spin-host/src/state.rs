//! The per-request store data and its implementations of Spin's host interfaces.
//!
//! One [`RequestState`] is made for each incoming request (as `spin up` does: a fresh
//! instance per request); it borrows the host-wide [`Shared`] state (key-value stores,
//! variables, the outbound allow list) through an `Arc`.

use crate::bindings::fermyon::spin::{key_value, redis, variables};
use crate::kv::{KvError, KvStores};
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::resp::{self, Connection, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host-wide state, shared by every request.
pub struct Shared {
    /// The key-value stores.
    pub kv: KvStores,
    /// Application variables.
    pub variables: BTreeMap<String, String>,
    /// Where outbound HTTP and Redis may go.
    pub allowed: Arc<AllowedHosts>,
}

/// The `T` of each request's `wasmtime::Store`.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    shared: Arc<Shared>,
}

impl RequestState {
    /// A fresh state for one request: stdout and stderr go to the host's, nothing else of
    /// the host (files, environment, sockets) is visible.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                allowed: shared.allowed.clone(),
            },
            shared,
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

// === impl key-value ===

/// The `store` resource: the label of an opened store.
pub struct KvHandle {
    label: String,
}

fn kv_err(e: KvError) -> key_value::Error {
    match e {
        KvError::AccessDenied => key_value::Error::AccessDenied,
        KvError::Io(m) => key_value::Error::Other(m),
    }
}

impl key_value::Host for RequestState {}

impl key_value::HostStore for RequestState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, key_value::Error>> {
        if !self.shared.kv.has(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(KvHandle { label })?))
    }

    async fn get(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.shared.kv.get(label, &key).map_err(kv_err))
    }

    async fn set(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.shared.kv.set(label, &key, value).map_err(kv_err))
    }

    async fn delete(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.shared.kv.delete(label, &key).map_err(kv_err))
    }

    async fn exists(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.shared.kv.exists(label, &key).map_err(kv_err))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KvHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.shared.kv.keys(label).map_err(kv_err))
    }

    async fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

// === impl variables ===

impl variables::Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(
            match crate::variables::lookup(&self.shared.variables, &name) {
                crate::variables::Lookup::Value(v) => Ok(v.to_string()),
                crate::variables::Lookup::InvalidName(m) => Err(variables::Error::InvalidName(m)),
                crate::variables::Lookup::Undefined(m) => Err(variables::Error::Undefined(m)),
            },
        )
    }
}

// === impl redis ===

/// The `connection` resource: one TCP connection to a Redis server.
pub struct RedisHandle {
    conn: Connection,
}

type RedisResult<T> = wasmtime::Result<Result<T, redis::Error>>;

impl RequestState {
    /// Runs one command on the connection behind `handle`. A server error reply (`-ERR …`)
    /// becomes `type-error` when it is about a value's type, `other` otherwise.
    async fn redis_cmd(
        &mut self,
        handle: &Resource<RedisHandle>,
        args: &[&[u8]],
    ) -> wasmtime::Result<Result<Value, redis::Error>> {
        let h = self.table.get_mut(handle)?;
        Ok(match h.conn.command(args).await {
            Ok(Value::Error(e)) if e.starts_with("WRONGTYPE") || e.contains("not an integer") => {
                Err(redis::Error::TypeError)
            }
            Ok(Value::Error(e)) => Err(redis::Error::Other(e)),
            Ok(v) => Ok(v),
            Err(e) => Err(redis::Error::Other(e.to_string())),
        })
    }
}

fn to_u32(v: Value) -> Result<u32, redis::Error> {
    match v {
        Value::Int(n) => u32::try_from(n).map_err(|_| redis::Error::TypeError),
        _ => Err(redis::Error::TypeError),
    }
}

fn to_strings(v: Value) -> Result<Vec<String>, redis::Error> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Bulk(b) => String::from_utf8(b).map_err(|_| redis::Error::TypeError),
                Value::Status(s) => Ok(s),
                _ => Err(redis::Error::TypeError),
            })
            .collect(),
        _ => Err(redis::Error::TypeError),
    }
}

/// Flattens a reply into `execute`'s list the way Spin does: an array contributes its items.
fn flatten(v: Value, out: &mut Vec<redis::RedisResult>) {
    match v {
        Value::Nil => out.push(redis::RedisResult::Nil),
        Value::Status(s) => out.push(redis::RedisResult::Status(s)),
        Value::Int(n) => out.push(redis::RedisResult::Int64(n)),
        Value::Bulk(b) => out.push(redis::RedisResult::Binary(b)),
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        // Only nested error replies (inside MULTI/EXEC arrays) get here.
        Value::Error(e) => out.push(redis::RedisResult::Status(e)),
    }
}

impl redis::Host for RequestState {}

impl redis::HostConnection for RequestState {
    async fn open(&mut self, address: String) -> RedisResult<Resource<RedisHandle>> {
        if !self.shared.allowed.allows_url(&address) {
            eprintln!(
                "[edgegate-spin-host] redis address {address:?} denied: not in allowed_outbound_hosts"
            );
            return Ok(Err(redis::Error::InvalidAddress));
        }
        let Some((addr, password, db)) = resp::parse_url(&address) else {
            return Ok(Err(redis::Error::InvalidAddress));
        };
        match Connection::connect(&addr, password.as_deref(), db).await {
            Ok(conn) => Ok(Ok(self.table.push(RedisHandle { conn })?)),
            Err(e) => Ok(Err(redis::Error::Other(e.to_string()))),
        }
    }

    async fn publish(
        &mut self,
        c: Resource<RedisHandle>,
        channel: String,
        payload: Vec<u8>,
    ) -> RedisResult<()> {
        let r = self
            .redis_cmd(&c, &[b"PUBLISH", channel.as_bytes(), &payload])
            .await?;
        Ok(r.map(|_| ()))
    }

    async fn get(&mut self, c: Resource<RedisHandle>, key: String) -> RedisResult<Option<Vec<u8>>> {
        let r = self.redis_cmd(&c, &[b"GET", key.as_bytes()]).await?;
        Ok(r.and_then(|v| match v {
            Value::Nil => Ok(None),
            Value::Bulk(b) => Ok(Some(b)),
            _ => Err(redis::Error::TypeError),
        }))
    }

    async fn set(
        &mut self,
        c: Resource<RedisHandle>,
        key: String,
        value: Vec<u8>,
    ) -> RedisResult<()> {
        let r = self
            .redis_cmd(&c, &[b"SET", key.as_bytes(), &value])
            .await?;
        Ok(r.map(|_| ()))
    }

    async fn incr(&mut self, c: Resource<RedisHandle>, key: String) -> RedisResult<i64> {
        let r = self.redis_cmd(&c, &[b"INCR", key.as_bytes()]).await?;
        Ok(r.and_then(|v| match v {
            Value::Int(n) => Ok(n),
            _ => Err(redis::Error::TypeError),
        }))
    }

    async fn del(&mut self, c: Resource<RedisHandle>, keys: Vec<String>) -> RedisResult<u32> {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        Ok(self.redis_cmd(&c, &args).await?.and_then(to_u32))
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        let mut args: Vec<&[u8]> = vec![b"SADD", key.as_bytes()];
        args.extend(values.iter().map(|v| v.as_bytes()));
        Ok(self.redis_cmd(&c, &args).await?.and_then(to_u32))
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisHandle>,
        key: String,
    ) -> RedisResult<Vec<String>> {
        let r = self.redis_cmd(&c, &[b"SMEMBERS", key.as_bytes()]).await?;
        Ok(r.and_then(to_strings))
    }

    async fn srem(
        &mut self,
        c: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        let mut args: Vec<&[u8]> = vec![b"SREM", key.as_bytes()];
        args.extend(values.iter().map(|v| v.as_bytes()));
        Ok(self.redis_cmd(&c, &args).await?.and_then(to_u32))
    }

    async fn execute(
        &mut self,
        c: Resource<RedisHandle>,
        command: String,
        arguments: Vec<redis::RedisParameter>,
    ) -> RedisResult<Vec<redis::RedisResult>> {
        let owned: Vec<Vec<u8>> = arguments
            .into_iter()
            .map(|a| match a {
                redis::RedisParameter::Int64(n) => n.to_string().into_bytes(),
                redis::RedisParameter::Binary(b) => b,
            })
            .collect();
        let mut args: Vec<&[u8]> = vec![command.as_bytes()];
        args.extend(owned.iter().map(Vec::as_slice));
        let r = self.redis_cmd(&c, &args).await?;
        Ok(r.map(|v| {
            let mut out = Vec::new();
            flatten(v, &mut out);
            out
        }))
    }

    async fn drop(&mut self, c: Resource<RedisHandle>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}
