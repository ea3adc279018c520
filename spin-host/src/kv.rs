//! Spin's key-value stores (`fermyon:spin/key-value@2.0.0`), shared by every request the host
//! serves, like `spin up`'s stores are shared by every instance of a component.
//!
//! A store is a map from string keys to byte values behind one mutex. With a `--kv-dir`,
//! every change is written through to `<dir>/<label>.json` (`{"key": "<base64 value>"}`,
//! written to a temporary file and renamed) before the guest's call returns, and the files are
//! read back at start, so a restarted host sees what the last one stored. The whole file is
//! rewritten on each change: fine for test-sized stores, not a database.

use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

type Map = BTreeMap<String, Vec<u8>>;

/// Why a store operation failed; maps onto the WIT `error` variant.
#[derive(Debug, Clone, PartialEq)]
pub enum KvError {
    /// The label is not one of the allowed stores (spin.toml `key_value_stores`).
    AccessDenied,
    /// Persisting the change failed; the message names the file.
    Io(String),
}

/// Every store the component may open, with optional persistence.
#[derive(Debug)]
pub struct KvStores {
    stores: HashMap<String, Mutex<Map>>,
    dir: Option<PathBuf>,
}

impl KvStores {
    /// Creates the allowed stores; with `dir`, creates it and loads `<dir>/<label>.json`
    /// for each label that has one.
    ///
    /// Fails when the directory cannot be created or a store file is unreadable or not the
    /// format this host writes.
    pub fn open(labels: &[String], dir: Option<&Path>) -> Result<Self, String> {
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let mut stores = HashMap::new();
        for label in labels {
            let map = match dir {
                Some(d) => load(&store_file(d, label))?,
                None => Map::new(),
            };
            stores.insert(label.clone(), Mutex::new(map));
        }
        Ok(Self {
            stores,
            dir: dir.map(Path::to_path_buf),
        })
    }

    /// Whether `label` may be opened.
    pub fn has(&self, label: &str) -> bool {
        self.stores.contains_key(label)
    }

    /// The value at `key`, if any.
    pub fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.lock(label)?.get(key).cloned())
    }

    /// Stores `value` at `key`, overwriting; persisted before it returns when a dir is set.
    pub fn set(&self, label: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut map = self.lock(label)?;
        map.insert(key.to_string(), value);
        self.persist(label, &map)
    }

    /// Removes `key`; no error when it was absent.
    pub fn delete(&self, label: &str, key: &str) -> Result<(), KvError> {
        let mut map = self.lock(label)?;
        if map.remove(key).is_some() {
            self.persist(label, &map)?;
        }
        Ok(())
    }

    /// Whether `key` has a value.
    pub fn exists(&self, label: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.lock(label)?.contains_key(key))
    }

    /// Every key of the store, sorted.
    pub fn keys(&self, label: &str) -> Result<Vec<String>, KvError> {
        Ok(self.lock(label)?.keys().cloned().collect())
    }

    fn lock(&self, label: &str) -> Result<std::sync::MutexGuard<'_, Map>, KvError> {
        let store = self.stores.get(label).ok_or(KvError::AccessDenied)?;
        // A panic while holding the lock leaves a consistent map (every change is one insert
        // or remove), so a poisoned lock is still usable.
        Ok(store.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn persist(&self, label: &str, map: &Map) -> Result<(), KvError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let file = store_file(dir, label);
        let b64 = base64::engine::general_purpose::STANDARD;
        let doc: BTreeMap<&str, String> = map
            .iter()
            .map(|(k, v)| (k.as_str(), b64.encode(v)))
            .collect();
        let text = serde_json::to_vec(&doc).map_err(|e| KvError::Io(e.to_string()))?;
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| KvError::Io(format!("{}: {e}", file.display())))
    }
}

/// `<dir>/<label>.json`, with every byte of the label outside `[A-Za-z0-9_-]` hex-escaped so
/// that no label can name a path outside the directory.
fn store_file(dir: &Path, label: &str) -> PathBuf {
    let mut name = String::new();
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02x}"));
        }
    }
    dir.join(format!("{name}.json"))
}

fn load(file: &Path) -> Result<Map, String> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let doc: BTreeMap<String, String> =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    doc.into_iter()
        .map(|(k, v)| {
            b64.decode(v.as_bytes())
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("{}: key {k:?}: {e}", file.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_separate_and_persist() {
        let dir = std::env::temp_dir().join(format!("spin-host-kv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let labels = ["default".to_string(), "../x".to_string()];
        let kv = KvStores::open(&labels, Some(&dir)).unwrap();
        kv.set("default", "a", b"1".to_vec()).unwrap();
        kv.set("../x", "a", vec![0, 255]).unwrap();
        kv.set("default", "b", b"2".to_vec()).unwrap();
        kv.delete("default", "b").unwrap();
        kv.delete("default", "never").unwrap();
        assert_eq!(kv.get("nope", "a"), Err(KvError::AccessDenied));
        assert!(dir.join("%2e%2e%2fx.json").exists());

        let again = KvStores::open(&labels, Some(&dir)).unwrap();
        assert_eq!(again.get("default", "a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(again.get("../x", "a").unwrap(), Some(vec![0, 255]));
        assert_eq!(again.keys("default").unwrap(), ["a"]);
        assert!(!again.exists("default", "b").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
