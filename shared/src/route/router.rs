//! The router: a segment trie over every API prefix and route template.
//!
//! # Precedence (most specific wins)
//! 1. **Path**, segment by segment from the left: a literal segment beats a `{param}`, which
//!    beats a `{*wildcard}`. The trie is searched depth-first in that order, backtracking when a
//!    branch has no route that fits.
//! 2. **Host**, among routes with the same path shape: an exact host beats a wildcard host, a
//!    longer wildcard beats a shorter one, any host pattern beats none.
//! 3. **Predicates**: a route whose header/query predicates include another's (and more) wins.
//! 4. **Method**: a route that fits everything but the method is skipped; if no route fits, and
//!    some fit all but the method, the answer is 405 with the union of their methods in `Allow`.
//!
//! Two routes that the rules above cannot order (same path shape, same host pattern,
//! overlapping methods, predicates neither contradictory nor nested) are a **config error**,
//! reported by [`RouterBuilder::build`] for every such pair.

use super::host::HostPattern;
use super::method::MethodSet;
use super::predicate::{sets_exclude, strict_subset, Predicate, QueryView};
use super::template::{PathTemplate, Segment};
use crate::headers::HeaderList;
use std::collections::HashMap;

/// What a router entry leads to; the router only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Index of the API in the compiled config.
    pub api: u16,
    /// Index of the route in the compiled config.
    pub route: u32,
    /// Index of the version within the API (None for an unversioned API).
    pub version: Option<u16>,
    /// Length in bytes of the literal API prefix (`/users-api/v2`) the entry starts with.
    pub prefix_len: u32,
}

/// One route as the router sees it.
#[derive(Debug, Clone)]
pub struct RouterEntry {
    /// Where it leads.
    pub target: Target,
    /// Methods it accepts.
    pub methods: MethodSet,
    /// Host restriction of the route.
    pub host: Option<HostPattern>,
    /// Header and query predicates (all must hold).
    pub predicates: Vec<Predicate>,
    /// The config path of the route, for conflict messages (`$.apis[0].routes[2]`).
    pub config_path: String,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, u32>,
    param: Option<u32>,
    endpoints: Vec<u32>,
    wildcard: Vec<u32>,
}

/// Hosts an API serves: None = every host; else the patterns of its environments.
pub type ApiHosts = Option<Vec<HostPattern>>;

/// Collects entries, then checks them and builds a [`Router`].
#[derive(Debug, Default)]
pub struct RouterBuilder {
    nodes: Vec<Node>,
    entries: Vec<RouterEntry>,
    api_hosts: Vec<ApiHosts>,
}

/// A route conflict found at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The config path of the later route.
    pub path: String,
    /// What it conflicts with and why.
    pub message: String,
}

impl RouterBuilder {
    /// An empty builder; `api_hosts[i]` tells which hosts API `i` serves.
    pub fn new(api_hosts: Vec<ApiHosts>) -> Self {
        RouterBuilder {
            nodes: vec![Node::default()],
            entries: Vec::new(),
            api_hosts,
        }
    }

    /// Adds a route under a literal prefix (`["users-api", "v2"]`).
    pub fn insert(&mut self, prefix: &[&str], template: &PathTemplate, entry: RouterEntry) {
        let mut node = 0u32;
        let literal = |s: &str| Segment::Literal(s.to_string());
        let segments: Vec<Segment> = prefix
            .iter()
            .map(|s| literal(s))
            .chain(template.segments().iter().cloned())
            .collect();
        let idx = self.entries.len() as u32;
        self.entries.push(entry);
        for seg in &segments {
            match seg {
                Segment::Literal(l) => {
                    node = match self.nodes[node as usize].literals.get(l.as_str()) {
                        Some(&n) => n,
                        None => {
                            let n = self.push_node();
                            self.nodes[node as usize]
                                .literals
                                .insert(l.as_str().into(), n);
                            n
                        }
                    };
                }
                Segment::Param(_) => {
                    node = match self.nodes[node as usize].param {
                        Some(n) => n,
                        None => {
                            let n = self.push_node();
                            self.nodes[node as usize].param = Some(n);
                            n
                        }
                    };
                }
                Segment::Wildcard(_) => {
                    self.nodes[node as usize].wildcard.push(idx);
                    return;
                }
            }
        }
        self.nodes[node as usize].endpoints.push(idx);
    }

    fn push_node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        (self.nodes.len() - 1) as u32
    }

    /// Sorts each node's entries by specificity and reports every pair of entries that the
    /// precedence rules cannot order.
    pub fn build(mut self) -> Result<Router, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        let entries = &self.entries;
        for node in &mut self.nodes {
            for list in [&mut node.endpoints, &mut node.wildcard] {
                for (i, &a) in list.iter().enumerate() {
                    for &b in &list[..i] {
                        let (ea, eb) = (&entries[a as usize], &entries[b as usize]);
                        if ea.config_path == eb.config_path {
                            continue; // one route under two prefixes never meets itself in a node
                        }
                        if let Some(why) = conflict(eb, ea, &self.api_hosts) {
                            let c = Conflict {
                                path: ea.config_path.clone(),
                                message: why,
                            };
                            // A route pair that conflicts under every version is one problem.
                            if !conflicts.contains(&c) {
                                conflicts.push(c);
                            }
                        }
                    }
                }
                // Stable: insertion order breaks ties that `conflict` proved harmless.
                list.sort_by_key(|&e| {
                    let e = &entries[e as usize];
                    std::cmp::Reverse((e.host.as_ref().map(HostPattern::rank), e.predicates.len()))
                });
            }
        }
        if conflicts.is_empty() {
            Ok(Router {
                nodes: self.nodes,
                entries: self.entries,
                api_hosts: self.api_hosts,
            })
        } else {
            Err(conflicts)
        }
    }
}

fn conflict(a: &RouterEntry, b: &RouterEntry, api_hosts: &[ApiHosts]) -> Option<String> {
    if !a.methods.overlaps(b.methods) {
        return None;
    }
    match (&a.host, &b.host) {
        (None, None) => {}
        (Some(p), Some(q)) if p == q => {}
        _ => return None, // different rank: the more specific wins; same rank: disjoint
    }
    if a.target.api != b.target.api {
        let (ha, hb) = (
            &api_hosts[a.target.api as usize],
            &api_hosts[b.target.api as usize],
        );
        if let (Some(ha), Some(hb)) = (ha, hb) {
            if !ha.iter().any(|p| hb.iter().any(|q| p.overlaps(q))) {
                return None;
            }
        }
    }
    if sets_exclude(&a.predicates, &b.predicates)
        || strict_subset(&a.predicates, &b.predicates)
        || strict_subset(&b.predicates, &a.predicates)
    {
        return None;
    }
    Some(format!(
        "conflicts with {}: same path shape, host and overlapping methods, and neither route's predicates are more specific (add a predicate, a host or split the methods)",
        a.config_path
    ))
}

/// The immutable router of a compiled config. Matching allocates only the parameter list.
#[derive(Debug)]
pub struct Router {
    nodes: Vec<Node>,
    entries: Vec<RouterEntry>,
    api_hosts: Vec<ApiHosts>,
}

/// The request facts routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Request method, as sent (methods are case-sensitive).
    pub method: &'a str,
    /// Host, lower-case, without port.
    pub host: &'a str,
    /// The raw absolute path (percent-encoded, no query).
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a HeaderList,
    /// The query string.
    pub query: QueryView<'a>,
}

/// A successful match: the entry and where its parameters sit in the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterMatch {
    /// The entry's target.
    pub target: Target,
    /// Byte ranges in the path of each `{param}` and then the `{*wildcard}`, in template order.
    pub params: Vec<(usize, usize)>,
}

/// Why no route was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    /// Nothing fits the path (with host and predicates).
    NotFound,
    /// Routes fit all but the method; these methods would be accepted.
    MethodNotAllowed(MethodSet),
}

impl Router {
    /// The number of entries (route × version).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the router has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the most specific route for a request (see the module doc for precedence).
    ///
    /// The path must start with `/`. Never fails otherwise: a path nothing fits is a miss.
    pub fn find(&self, req: &RouteRequest<'_>) -> Result<RouterMatch, RouteMiss> {
        let mut segs: Vec<(usize, usize)> = Vec::with_capacity(8);
        let body = req.path.get(1..).unwrap_or("");
        if !body.is_empty() {
            let mut start = 1;
            for part in body.split('/') {
                segs.push((start, start + part.len()));
                start += part.len() + 1;
            }
        }
        let mut params = Vec::new();
        let mut allowed = MethodSet::EMPTY;
        match self.walk(0, 0, &segs, req, &mut params, &mut allowed) {
            Some((entry, rest)) => {
                if let Some(r) = rest {
                    params.push(r);
                }
                Ok(RouterMatch {
                    target: self.entries[entry as usize].target,
                    params,
                })
            }
            None if allowed != MethodSet::EMPTY => Err(RouteMiss::MethodNotAllowed(allowed)),
            None => Err(RouteMiss::NotFound),
        }
    }

    fn walk(
        &self,
        node: u32,
        i: usize,
        segs: &[(usize, usize)],
        req: &RouteRequest<'_>,
        params: &mut Vec<(usize, usize)>,
        allowed: &mut MethodSet,
    ) -> Option<(u32, Option<(usize, usize)>)> {
        let n = &self.nodes[node as usize];
        if i == segs.len() {
            if let Some(e) = self.pick(&n.endpoints, req, allowed) {
                return Some((e, None));
            }
        } else {
            let (s, e) = segs[i];
            let seg = &req.path[s..e];
            if let Some(&child) = n.literals.get(seg) {
                if let Some(found) = self.walk(child, i + 1, segs, req, params, allowed) {
                    return Some(found);
                }
            }
            if let (Some(child), false) = (n.param, seg.is_empty()) {
                params.push((s, e));
                if let Some(found) = self.walk(child, i + 1, segs, req, params, allowed) {
                    return Some(found);
                }
                params.pop();
            }
        }
        if !n.wildcard.is_empty() {
            let start = segs.get(i).map_or(req.path.len(), |s| s.0);
            if let Some(e) = self.pick(&n.wildcard, req, allowed) {
                return Some((e, Some((start, req.path.len()))));
            }
        }
        None
    }

    fn pick(&self, list: &[u32], req: &RouteRequest<'_>, allowed: &mut MethodSet) -> Option<u32> {
        for &idx in list {
            let e = &self.entries[idx as usize];
            if let Some(h) = &e.host {
                if !h.matches(req.host) {
                    continue;
                }
            }
            if let Some(hosts) = &self.api_hosts[e.target.api as usize] {
                if !hosts.iter().any(|h| h.matches(req.host)) {
                    continue;
                }
            }
            if !e
                .predicates
                .iter()
                .all(|p| p.holds(req.headers, &req.query))
            {
                continue;
            }
            if e.methods.contains(req.method) {
                return Some(idx);
            }
            *allowed = allowed.union(e.methods);
        }
        None
    }
}
