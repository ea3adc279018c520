//! A map with a size bound: the oldest entry goes first when it is full.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// An isolate-local map of at most `capacity` entries, evicting the oldest inserted first.
/// Interior mutability: borrows never outlive a call (never across an `.await`).
pub struct BoundedMap<K, V> {
    capacity: usize,
    entries: RefCell<HashMap<K, V>>,
    order: RefCell<VecDeque<K>>,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries (0: holds nothing).
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            capacity,
            entries: RefCell::new(HashMap::new()),
            order: RefCell::new(VecDeque::new()),
        }
    }

    /// A clone of the value under `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.borrow().get(key).cloned()
    }

    /// Inserts or replaces; evicts the oldest entries beyond the capacity.
    pub fn insert(&self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        if entries.insert(key.clone(), value).is_none() {
            order.push_back(key);
        }
        while entries.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    entries.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) {
        if self.entries.borrow_mut().remove(key).is_some() {
            self.order.borrow_mut().retain(|k| k != key);
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn evicts_oldest_first_and_replacing_keeps_the_order() {
        let m = BoundedMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "a2");
        m.insert(3, "c");
        assert_eq!(
            (m.get(&1), m.get(&2), m.get(&3)),
            (None, Some("b"), Some("c"))
        );
        m.remove(&2);
        assert_eq!(m.len(), 1);
        let none = BoundedMap::new(0);
        none.insert(1, 1);
        assert!(none.is_empty());
    }
}
