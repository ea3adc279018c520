//! # Load-benchmark target e: a minimal Rust pass-through worker
//!
//! The same work as `bench/load/passthrough-worker.mjs` (target b), but through workers-rs and
//! wasm-bindgen's glue (the `#[event(fetch)]` macro, `future_to_promise`, `JsFuture`), built
//! with the same toolchain and release profile as edgegate. Comparing it with b gives the cost
//! of that glue alone; comparing edgegate with it gives the cost of edgegate's own work.
//!
//! Per request, as the JS pass-through does: `new URL(request.url)`, the target
//! `new URL(pathname + search, env.BACKEND)`, and `fetch(new Request(target, request))`, whose
//! response is returned as it is (streamed, not buffered). Binding: `BACKEND` (text), e.g.
//! `"http://127.0.0.1:9100"`. No logging mode (the JS worker's `LOG=1` is target d).

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response, Url, WorkerGlobalScope};
use worker::{event, Context, Env, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let url = Url::new(&req.url())?;
    let backend = env.var("BACKEND")?.to_string();
    let target = Url::new_with_base(&(url.pathname() + &url.search()), &backend)?;
    // `new Request(target, request)`: the incoming request is the init (method, headers, body…).
    let outbound =
        Request::new_with_str_and_init(&target.href(), req.unchecked_ref::<RequestInit>())?;
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_request(&outbound)).await?;
    Ok(response.unchecked_into())
}
