//! The component listener: compiles the component once, then serves each HTTP/1.1 request
//! on a fresh instance, as `spin up` does for the HTTP trigger.

use crate::config::HostConfig;
use crate::kv::KvStores;
use crate::state::{RequestState, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime::component::{HasSelf, InstancePre, Linker, Val};
use wasmtime::error::Context as _;
use wasmtime::Result;
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

/// A compiled component and the host state every request shares.
pub struct Host {
    pre: ProxyPre<RequestState>,
    /// The same linked component, for exports other than the HTTP handler (`/cron`).
    instance_pre: InstancePre<RequestState>,
    shared: Arc<Shared>,
}

impl Host {
    /// Compiles the component, links Spin's interfaces and WASI, opens (and seeds) the
    /// key-value stores.
    ///
    /// Fails when the component cannot be read or compiled, imports something this host
    /// does not provide (the error names the import), does not export
    /// `wasi:http/incoming-handler`, or the stores cannot be opened or seeded.
    pub fn new(config: &HostConfig) -> Result<Self> {
        let mut wasm_config = Config::new();
        wasm_config.wasm_component_model(true);
        let engine = Engine::new(&wasm_config)?;
        let component =
            crate::compile::load(&engine, &config.component, config.compile_cache.as_deref())
                .with_context(|| format!("compiling {}", config.component.display()))?;

        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::bindings::Host_::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |s| s)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .context("linking the component (an import this host lacks?)")?;
        let pre = ProxyPre::new(instance_pre.clone())?;

        let kv = KvStores::open(&config.kv_stores, config.kv_dir.as_deref())
            .map_err(|e| wasmtime::format_err!("opening key-value stores: {e}"))?;
        for (store, key, value) in &config.kv_seed {
            kv.set(store, key, value.clone())
                .map_err(|e| wasmtime::format_err!("--kv-put {store}:{key}: {e:?}"))?;
        }
        let shared = Arc::new(Shared {
            kv,
            variables: config.variables.clone(),
            allowed: Arc::new(config.allowed_outbound_hosts.clone()),
        });
        Ok(Self {
            pre,
            instance_pre,
            shared,
        })
    }

    /// The state shared by every request (the admin endpoint works on its stores).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs the component's `handle-cron-event` export (the spin-trigger-cron plugin's world,
    /// `fermyon:spin-cron@2.0.0`: `func(metadata: record { timestamp: u64 }) -> result<_,
    /// variant { other(string) }>`) once on a fresh instance, as the plugin does on each tick.
    ///
    /// Errors: the component has no such export, it traps, or it returns its error.
    pub async fn cron_event(&self, timestamp: u64) -> Result<()> {
        let mut store = Store::new(self.pre.engine(), RequestState::new(self.shared.clone()));
        let instance = self.instance_pre.instantiate_async(&mut store).await?;
        let func = instance
            .get_func(&mut store, "handle-cron-event")
            .context("the component exports no handle-cron-event")?;
        let metadata = Val::Record(vec![("timestamp".into(), Val::U64(timestamp))]);
        let mut results = [Val::Bool(false)];
        func.call_async(&mut store, &[metadata], &mut results)
            .await?;
        match &results[0] {
            Val::Result(Ok(_)) => Ok(()),
            Val::Result(Err(e)) => Err(wasmtime::format_err!("handle-cron-event failed: {e:?}")),
            other => Err(wasmtime::format_err!(
                "handle-cron-event returned {other:?}"
            )),
        }
    }

    /// Runs one request on a fresh instance and returns the component's response.
    ///
    /// The response head comes back as soon as the component sets it; its body streams
    /// while the instance keeps running in its own task. A component that traps or never
    /// answers gives a 500 whose body says why (the trap also goes to stderr).
    pub async fn handle(
        &self,
        mut req: hyper::Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        add_spin_headers(&mut req, client);
        let mut store = Store::new(self.pre.engine(), RequestState::new(self.shared.clone()));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|r| Ok((r, store.data_mut().http().new_response_outparam(sender)?)));
        let (req, out) = match prepared {
            Ok(p) => p,
            Err(e) => return error_response(400, &format!("bad request: {e:#}")),
        };
        let pre = self.pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(resp)) => {
                tokio::spawn(async move {
                    if let Ok(Err(e)) = task.await {
                        eprintln!("[edgegate-spin-host] component failed after responding: {e:#}");
                    }
                });
                resp
            }
            Ok(Err(code)) => error_response(500, &format!("component error: {code:?}")),
            Err(_) => {
                let why = match task.await {
                    Ok(Ok(())) => "the component returned without setting a response".to_string(),
                    Ok(Err(e)) => format!("{e:?}"),
                    Err(e) => format!("{e}"),
                };
                eprintln!("[edgegate-spin-host] component failed: {why}");
                error_response(500, &format!("component failed: {why}"))
            }
        }
    }
}

/// The headers Spin's HTTP trigger adds for a component routed at `/...` (client-sent
/// values of the same names are replaced).
fn add_spin_headers<B>(req: &mut hyper::Request<B>, client: SocketAddr) {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let path = req.uri().path().to_string();
    let pairs = [
        ("spin-full-url", format!("http://{host}{path_and_query}")),
        ("spin-path-info", path),
        ("spin-matched-route", "/...".to_string()),
        ("spin-raw-component-route", "/...".to_string()),
        ("spin-component-route", String::new()),
        ("spin-base-path", "/".to_string()),
        ("spin-client-addr", client.to_string()),
    ];
    let headers = req.headers_mut();
    for (name, value) in pairs {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn error_response(status: u16, msg: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(msg.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp
}

/// Binds both listeners, prints `{"http":"127.0.0.1:P","admin":"127.0.0.1:Q"}` on stdout,
/// and serves until the process is killed.
///
/// Fails when the component or stores cannot be prepared ([`Host::new`]) or an address
/// cannot be bound.
pub async fn run(config: HostConfig) -> Result<()> {
    let host = Arc::new(Host::new(&config)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding {}", config.admin_listen))?;
    let line = serde_json::json!({
        "http": listener.local_addr()?.to_string(),
        "admin": admin.local_addr()?.to_string(),
    });
    println!("{line}");
    tokio::spawn(crate::admin::serve(admin, host.clone()));
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("[edgegate-spin-host] accept: {e}");
                continue;
            }
        };
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(host.handle(req, client).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                eprintln!("[edgegate-spin-host] connection from {client}: {e}");
            }
        });
    }
}
