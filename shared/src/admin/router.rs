//! The admin API's route table: one row per endpoint (method, path template under the
//! prefix, handler). The OpenAPI document lists exactly these rows (a test keeps them equal).
//!
//! Adding an endpoint is one [`Endpoint`] variant, one row in [`ROUTES`], one arm in the
//! dispatcher (`super::handlers::dispatch`) and its entry in `openapi.json`.

/// What an admin call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Gateway status, active config and snapshot versions, overrides revision.
    Health,
    /// This API's OpenAPI 3.1 document.
    OpenApi,
    /// The active config document and its version.
    Config,
    /// Dry-run compile of a posted config: every error with its JSON path.
    ValidateConfig,
    /// The active config's routes, each with its disabled flag.
    Routes,
    /// Take a route out of service.
    DisableRoute,
    /// Put a route back into service.
    EnableRoute,
    /// The emergency IP block list.
    ListBlocks,
    /// Add (or update) a block.
    AddBlock,
    /// Remove a block.
    RemoveBlock,
    /// The rate limits of the active config (how to name their counters).
    RateLimits,
    /// Read a rate-limit counter.
    ReadCounter,
    /// Reset a rate-limit counter.
    ResetCounter,
}

impl Endpoint {
    /// A stable name for audit lines (`ip_blocks.add`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Health => "health",
            Endpoint::OpenApi => "openapi",
            Endpoint::Config => "config.get",
            Endpoint::ValidateConfig => "config.validate",
            Endpoint::Routes => "routes.list",
            Endpoint::DisableRoute => "routes.disable",
            Endpoint::EnableRoute => "routes.enable",
            Endpoint::ListBlocks => "ip_blocks.list",
            Endpoint::AddBlock => "ip_blocks.add",
            Endpoint::RemoveBlock => "ip_blocks.remove",
            Endpoint::RateLimits => "rate_limits.list",
            Endpoint::ReadCounter => "counters.read",
            Endpoint::ResetCounter => "counters.reset",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The HTTP method.
    pub method: &'static str,
    /// The path under the prefix; `{name}` segments capture one path segment.
    pub path: &'static str,
    /// The endpoint.
    pub endpoint: Endpoint,
}

/// Every admin endpoint. After the Registry sync is merged, these rows join it:
/// `GET /config/versions`, `POST /config/versions/{id}/activate`, `POST /config/rollback`,
/// `POST /sync`.
#[rustfmt::skip]
pub const ROUTES: &[Row] = &[
    Row { method: "GET", path: "/health", endpoint: Endpoint::Health },
    Row { method: "GET", path: "/openapi.json", endpoint: Endpoint::OpenApi },
    Row { method: "GET", path: "/config", endpoint: Endpoint::Config },
    Row { method: "POST", path: "/config/validate", endpoint: Endpoint::ValidateConfig },
    Row { method: "GET", path: "/routes", endpoint: Endpoint::Routes },
    Row { method: "POST", path: "/routes/{api}/{route}/disable", endpoint: Endpoint::DisableRoute },
    Row { method: "POST", path: "/routes/{api}/{route}/enable", endpoint: Endpoint::EnableRoute },
    Row { method: "GET", path: "/ip-blocks", endpoint: Endpoint::ListBlocks },
    Row { method: "POST", path: "/ip-blocks", endpoint: Endpoint::AddBlock },
    Row { method: "DELETE", path: "/ip-blocks", endpoint: Endpoint::RemoveBlock },
    Row { method: "GET", path: "/rate-limits", endpoint: Endpoint::RateLimits },
    Row { method: "GET", path: "/rate-limits/counters", endpoint: Endpoint::ReadCounter },
    Row { method: "DELETE", path: "/rate-limits/counters", endpoint: Endpoint::ResetCounter },
];

/// Why no row matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No row has this path.
    NotFound,
    /// Rows have this path, with these methods (for `Allow`).
    Method(Vec<&'static str>),
}

/// The row for `method` and `path` (under the prefix), with the captured segments in order.
///
/// Errors: [`Miss::NotFound`], or [`Miss::Method`] with the methods the path allows.
pub fn find(method: &str, path: &str) -> Result<(Endpoint, Vec<String>), Miss> {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let mut allowed = Vec::new();
    for row in ROUTES {
        let Some(params) = capture(row.path, &segs) else {
            continue;
        };
        if row.method == method {
            return Ok((row.endpoint, params));
        }
        allowed.push(row.method);
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method(allowed))
    }
}

fn capture(template: &str, segs: &[&str]) -> Option<Vec<String>> {
    let tpl: Vec<&str> = template.split('/').skip(1).collect();
    if tpl.len() != segs.len() {
        return None;
    }
    let mut params = Vec::new();
    for (t, s) in tpl.iter().zip(segs) {
        if t.starts_with('{') {
            if s.is_empty() {
                return None;
            }
            params.push((*s).to_string());
        } else if t != s {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found = Result<(Endpoint, Vec<String>), Miss>;

    #[test]
    fn find_table() {
        let table: Vec<(&str, &str, Found)> = vec![
            ("GET", "/health", Ok((Endpoint::Health, vec![]))),
            (
                "POST",
                "/routes/users/get-user/disable",
                Ok((
                    Endpoint::DisableRoute,
                    vec!["users".into(), "get-user".into()],
                )),
            ),
            ("DELETE", "/ip-blocks", Ok((Endpoint::RemoveBlock, vec![]))),
            (
                "PUT",
                "/ip-blocks",
                Err(Miss::Method(vec!["GET", "POST", "DELETE"])),
            ),
            ("GET", "/nope", Err(Miss::NotFound)),
            ("GET", "", Err(Miss::NotFound)),
            ("GET", "/health/", Err(Miss::NotFound)),
            ("POST", "/routes//x/disable", Err(Miss::NotFound)),
        ];
        for (m, p, want) in table {
            assert_eq!(find(m, p), want, "{m} {p}");
        }
    }
}
