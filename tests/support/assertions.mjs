// Assertions shared by the suites: the problem+json shape and the access-log record.
import assert from "node:assert/strict";

/**
 * The gateway's own answers: status, application/problem+json, `type` =
 * urn:edgegate:problem:<code>, `code`, `status`, a `title`, and `request_id` equal to the
 * response's X-Request-ID. Returns the parsed problem.
 */
export function assertProblem(res, { status, code }) {
  assert.equal(res.status, status, `status (body: ${res.text})`);
  assert.match(
    String(res.headers["content-type"]),
    /^application\/problem\+json\b/,
    "content-type is application/problem+json",
  );
  let problem;
  assert.doesNotThrow(() => (problem = JSON.parse(res.text)), `problem body is JSON: ${res.text}`);
  assert.equal(problem.code, code, "problem.code");
  assert.equal(problem.status, status, "problem.status");
  assert.equal(problem.type, `urn:edgegate:problem:${code}`, "problem.type");
  assert.equal(typeof problem.title, "string", "problem.title");
  assert.ok(res.headers["x-request-id"], "x-request-id response header present");
  assert.equal(problem.request_id, res.headers["x-request-id"], "problem.request_id = X-Request-ID");
  return problem;
}

export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
export const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

const isInt = (v) => Number.isInteger(v) && v >= 0;
const strOrNull = (v) => v === null || typeof v === "string";
const intOrNull = (v) => v === null || isInt(v);

/**
 * Checks every field of shared/src/access_log.rs's AccessLogRecord is present with the
 * right JSON type (values are checked by the callers).
 */
export function assertAccessRecordShape(e) {
  const expect = {
    kind: (v) => v === "access",
    time: (v) => typeof v === "string" && RFC3339.test(v) && !Number.isNaN(Date.parse(v)),
    request_id: (v) => typeof v === "string" && v.length > 0,
    trace_id: (v) => typeof v === "string" && /^[0-9a-f]{32}$/.test(v),
    method: (v) => typeof v === "string" && v.length > 0,
    host: (v) => typeof v === "string" && v.length > 0,
    path: (v) => typeof v === "string" && v.startsWith("/"),
    client_ip: strOrNull,
    route: strOrNull,
    api: strOrNull,
    version: strOrNull,
    environment: strOrNull,
    status: (v) => Number.isInteger(v) && v >= 100 && v <= 599,
    error_code: strOrNull,
    error_detail: strOrNull,
    bytes_in: intOrNull,
    bytes_out: intOrNull,
    upstream: strOrNull,
    attempts: isInt,
    gateway_ms: isInt,
    backend_ms: intOrNull,
    config_version: strOrNull,
  };
  for (const [field, ok] of Object.entries(expect)) {
    assert.ok(field in e, `access record has field ${field}: ${JSON.stringify(e)}`);
    assert.ok(ok(e[field]), `access record field ${field} has the right type/format: ${JSON.stringify(e[field])}`);
  }
}
