//! Routing: path templates, host patterns, predicates, method sets and the trie router.

pub mod host;
pub mod method;
pub mod predicate;
pub mod router;
pub mod template;

pub use host::{normalize_host, HostPattern};
pub use method::MethodSet;
pub use predicate::{without_param, Condition, Predicate, QueryView, Source};
pub use router::{RouteMiss, RouteRequest, Router, RouterMatch, Target};
pub(crate) use template::is_pchar;
pub use template::{PathTemplate, Segment};
