//! The access-log record (one JSON line per request) and operational log events.

use serde::Serialize;

/// One request, as logged when its response head is sent.
///
/// Fields are stable (log pipelines parse them). Byte counts come from `Content-Length`
/// (null when a body is chunked): the gateway streams bodies and never counts them itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessLogRecord {
    /// Always `"access"`, to tell access lines from events.
    pub kind: &'static str,
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The request id (also sent upstream and back to the client).
    pub request_id: String,
    /// The trace id of the request's `traceparent`.
    pub trace_id: String,
    /// Request method.
    pub method: String,
    /// Request host.
    pub host: String,
    /// Request path (no query: queries may carry credentials).
    pub path: String,
    /// Client address, as the platform reports it.
    pub client_ip: Option<String>,
    /// Matched route name.
    pub route: Option<String>,
    /// Matched API name.
    pub api: Option<String>,
    /// Matched API version.
    pub version: Option<String>,
    /// Environment of the matched API.
    pub environment: Option<String>,
    /// Response status sent to the client.
    pub status: u16,
    /// The gateway's error code when it answered itself.
    pub error_code: Option<&'static str>,
    /// Internal detail of the error (never sent to the client).
    pub error_detail: Option<String>,
    /// Request body bytes (declared `Content-Length`).
    pub bytes_in: Option<u64>,
    /// Response body bytes (`Content-Length` of the response).
    pub bytes_out: Option<u64>,
    /// Instance base URL of the last attempt.
    pub upstream: Option<String>,
    /// Upstream attempts made (failover makes more than one).
    pub attempts: u32,
    /// Time spent in the gateway itself, ms (total minus backend).
    pub gateway_ms: u64,
    /// Time waiting for backend response heads, ms (all attempts).
    pub backend_ms: Option<u64>,
    /// The config version the request ran on.
    pub config_version: Option<String>,
    /// How the caller authenticated (`jwt`, `anonymous`), if the route has an auth policy.
    pub auth_method: Option<&'static str>,
    /// The authenticated subject (`sub`).
    pub subject: Option<String>,
    /// The client application (`azp` / `client_id`).
    pub application: Option<String>,
    /// The subscription that authorized the call (for metering).
    pub subscription: Option<String>,
    /// The scopes granted to the call (the caller's and the subscription's), space-separated;
    /// only when a subscription authorized it.
    pub scopes: Option<String>,
}

impl AccessLogRecord {
    /// The record as one JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An operational event (config activated or rejected, KV errors) as one JSON line:
/// `{"kind":"event","event":NAME,"time":...,...fields}`.
pub fn event_line(name: &str, now_ms: u64, fields: serde_json::Value) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), "event".into());
    obj.insert("event".into(), name.into());
    obj.insert("time".into(), rfc3339_ms(now_ms).into());
    if let serde_json::Value::Object(f) = fields {
        obj.extend(f);
    }
    serde_json::Value::Object(obj).to_string()
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-26T04:55:10.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = crate::ratelimit::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        for (ms, s) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_795_668_910_123, "2026-11-26T04:55:10.123Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339_ms(ms), s, "{ms}");
        }
    }

    #[test]
    fn event_line_shape() {
        let line = event_line("config_activated", 0, serde_json::json!({"version": "v1"}));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(v["event"], "config_activated");
        assert_eq!(v["version"], "v1");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }
}
