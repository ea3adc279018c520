//! Loads the component: compiled by Cranelift once, then reused from an on-disk cache.
//!
//! Every test starts its own host on the same ~2 MB component; compiling it takes seconds
//! each time. The compiled artifact (`Component::serialize`) is kept in a cache directory
//! under a name that hashes the component's bytes, the host binary (path, size, mtime) and
//! wasmtime's compatibility hash of the engine (its version and compiler settings); a later
//! start with the same three maps the file instead of compiling. The directory is
//! `--compile-cache DIR`, or `component-cache/` beside the host binary (in the target dir
//! for a built host); `--compile-cache off` disables it. A cache that cannot be read or
//! written is ignored (the component is compiled as without it).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{Engine, Result};

/// Where compiled components are kept; None: compile every time.
pub fn default_cache_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("component-cache"))
}

/// The component at `path`, from `cache` when it holds this exact component for this host
/// and engine, compiled (and then stored in `cache`) otherwise.
pub fn load(engine: &Engine, path: &Path, cache: Option<&Path>) -> Result<Component> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(dir) = cache else {
        return Component::new(engine, &wasm);
    };
    let file = dir.join(format!("{:016x}.cwasm", key(engine, &wasm)));
    if file.is_file() {
        match deserialize(engine, &file) {
            Ok(c) => return Ok(c),
            Err(e) => eprintln!(
                "[edgegate-spin-host] ignoring the cached {}: {e:#}",
                file.display()
            ),
        }
    }
    let component = Component::new(engine, &wasm)?;
    if let Err(e) = store(&component, dir, &file) {
        eprintln!(
            "[edgegate-spin-host] not caching the compiled component in {}: {e:#}",
            dir.display()
        );
    }
    Ok(component)
}

/// The cache key: the component's bytes, the host binary, the engine's compile settings.
fn key(engine: &Engine, wasm: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    wasm.hash(&mut h);
    if let Ok(exe) = std::env::current_exe() {
        exe.hash(&mut h);
        if let Ok(meta) = std::fs::metadata(&exe) {
            meta.len().hash(&mut h);
            meta.modified().ok().hash(&mut h);
        }
    }
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Writes the compiled component to `file` through a temporary file and a rename, so that
/// hosts starting at the same time never see a partial file.
fn store(component: &Component, dir: &Path, file: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: &Path) -> Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be `Component::serialize` output; wasmtime
    // itself rejects one made by another wasmtime version or engine configuration. The file
    // is one this host wrote (through a rename, never partially) into its own cache
    // directory, under a name that includes the hash of the component's bytes and of the
    // host binary; only someone who can write there (and so could replace the host binary
    // itself) could substitute it.
    unsafe { Component::deserialize_file(engine, file) }
}
