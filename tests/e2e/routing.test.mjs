// Routing: the spec example, 404/405 as problem+json, precedence (literal > param, header
// predicate, host), upstream_path rewrites and wildcard routes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "../support/gateway.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";

let gw, v1, v2, orders, special, wild, catProd, catSandbox;

before(async () => {
  [v1, v2, orders, special, wild, catProd, catSandbox] = await Promise.all(
    ["users-v1", "users-v2", "orders", "special", "wild", "cat-prod", "cat-sandbox"].map((n) => startBackend(n)),
  );
  gw = await startGateway({
    config: {
      pools: {
        "users-v1": { instances: [{ url: v1.url }] },
        "users-v2": { instances: [{ url: v2.url }] },
        "orders-v3": { instances: [{ url: `${orders.url}/orders-service` }] },
        special: { instances: [{ url: special.url }] },
        wild: { instances: [{ url: wild.url }] },
        "cat-prod": { instances: [{ url: catProd.url }] },
        "cat-sandbox": { instances: [{ url: catSandbox.url }] },
      },
      apis: [
        {
          name: "users",
          base_path: "/users-api",
          versions: [
            { name: "v1", pool: "users-v1" },
            { name: "v2", pool: "users-v2" },
          ],
          routes: [
            { name: "list-users", methods: ["GET"], path: "/users" },
            { name: "get-user", methods: ["GET"], path: "/users/{id}" },
            { name: "update-user", methods: ["PUT", "PATCH", "DELETE"], path: "/users/{id}" },
            { name: "me", methods: ["GET"], path: "/users/me", upstream_path: "/whoami" },
            {
              name: "get-user-beta",
              methods: ["GET"],
              path: "/users/{id}",
              versions: ["v2"],
              headers: [{ name: "x-beta", equals: "1" }],
            },
            { name: "get-user-host", methods: ["GET"], path: "/users/{id}", host: "api.example.com", pool: "special" },
            { name: "get-user-wild", methods: ["GET"], path: "/users/{id}", host: "*.example.com", pool: "wild" },
            { name: "account", methods: ["GET"], path: "/accounts/{id}/profile", upstream_path: "/v1/acct/{id}" },
          ],
        },
        {
          name: "orders",
          base_path: "/orders-api",
          versions: [{ name: "v3", pool: "orders-v3" }],
          routes: [
            { name: "create-order", methods: ["POST"], path: "/orders" },
            { name: "get-order", methods: ["GET"], path: "/orders/{id}" },
            { name: "files", methods: ["GET", "PUT"], path: "/files/{*path}" },
            { name: "static", methods: ["GET"], path: "/static/{*rest}", upstream_path: "/cdn/{*rest}" },
          ],
        },
        {
          // Environments by host; every environment names hosts, so other hosts are not served.
          name: "catalog",
          base_path: "/catalog",
          pool: "cat-prod",
          environments: [
            { name: "production", hosts: ["catalog.example.com"] },
            { name: "sandbox", hosts: ["*.sandbox.example.com"], pools: { "cat-prod": "cat-sandbox" } },
          ],
          routes: [{ name: "item", methods: ["GET"], path: "/items/{id}" }],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(v1, v2, orders, special, wild, catProd, catSandbox);
});

/** GET through the gateway; returns { res, log, body } with the backend's echo as body. */
async function get(path, headers = {}, method = "GET") {
  const { res, log } = await gw.requestLogged({ method, path, headers });
  let body = null;
  if (res.status === 200 && method !== "HEAD") body = res.json();
  return { res, log, body };
}

test("spec example: GET /users-api/v2/users/42 → users-v2 backend at /users/42, query kept", async () => {
  const { res, log, body } = await get("/users-api/v2/users/42?expand=profile&x=1%202");
  assert.equal(res.status, 200);
  assert.equal(body.backend, "users-v2");
  assert.equal(body.method, "GET");
  assert.equal(body.url, "/users/42?expand=profile&x=1%202");
  assert.equal(log.route, "get-user");
  assert.equal(log.api, "users");
  assert.equal(log.version, "v2");
  assert.equal(log.environment, "default");
  assert.equal(log.upstream, v2.url);
  assert.equal(log.path, "/users-api/v2/users/42", "the access log path has no query");
});

test("versions pick their pool: /users-api/v1/... → users-v1", async () => {
  const { body, log } = await get("/users-api/v1/users/7");
  assert.equal(body.backend, "users-v1");
  assert.equal(body.url, "/users/7");
  assert.equal(log.version, "v1");
});

test("a GET route serves HEAD", async () => {
  const { res, log } = await get("/users-api/v2/users/42", {}, "HEAD");
  assert.equal(res.status, 200);
  assert.equal(log.route, "get-user");
  const rec = v2.byRequestId(log.request_id)[0];
  assert.equal(rec.method, "HEAD");
});

test("404 route_not_found is problem+json with the request id", async () => {
  for (const path of ["/nope", "/users-api/v9/users/42", "/users-api/v2/users/42/extra", "/users-api"]) {
    const { res, log } = await get(path);
    const problem = assertProblem(res, { status: 404, code: "route_not_found" });
    assert.equal(log.status, 404, path);
    assert.equal(log.error_code, "route_not_found", path);
    assert.equal(log.route, null, path);
    assert.equal(problem.request_id, log.request_id);
  }
});

test("a client's sane X-Request-ID is the problem's request_id", async () => {
  const { res } = await get("/nope", { "x-request-id": "client-id-404" });
  const problem = assertProblem(res, { status: 404, code: "route_not_found" });
  assert.equal(problem.request_id, "client-id-404");
});

test("405 method_not_allowed with the exact Allow header", async () => {
  const cases = [
    // get-user (GET, HEAD) + update-user (PUT, PATCH, DELETE); the beta/host routes don't fit.
    ["POST", "/users-api/v2/users/42", "GET, HEAD, PUT, DELETE, PATCH"],
    // the literal `me` (GET) and the {id} routes all fit the path
    ["POST", "/users-api/v2/users/me", "GET, HEAD, PUT, DELETE, PATCH"],
    ["DELETE", "/users-api/v1/users", "GET, HEAD"],
    ["GET", "/orders-api/v3/orders", "POST"],
    ["DELETE", "/orders-api/v3/files/a/b", "GET, HEAD, PUT"],
  ];
  for (const [method, path, allow] of cases) {
    const { res, log } = await get(path, {}, method);
    assertProblem(res, { status: 405, code: "method_not_allowed" });
    assert.equal(res.headers.allow, allow, `Allow for ${method} ${path}`);
    assert.equal(log.error_code, "method_not_allowed");
  }
});

test("precedence: literal segment beats {param}; upstream_path rewrites /users/me → /whoami", async () => {
  const { body, log } = await get("/users-api/v2/users/me?a=b");
  assert.equal(log.route, "me");
  assert.equal(body.backend, "users-v2");
  assert.equal(body.url, "/whoami?a=b");
  // A different value in the same position is the param route.
  const other = await get("/users-api/v2/users/mex");
  assert.equal(other.log.route, "get-user");
  assert.equal(other.body.url, "/users/mex");
});

test("precedence: a header-predicate route beats the plain one, only when the header matches", async () => {
  const beta = await get("/users-api/v2/users/42", { "x-beta": "1" });
  assert.equal(beta.log.route, "get-user-beta");
  assert.equal(beta.body.url, "/users/42");
  const wrongValue = await get("/users-api/v2/users/42", { "x-beta": "2" });
  assert.equal(wrongValue.log.route, "get-user");
  const noHeader = await get("/users-api/v2/users/42");
  assert.equal(noHeader.log.route, "get-user");
  // get-user-beta serves only v2
  const v1beta = await get("/users-api/v1/users/42", { "x-beta": "1" });
  assert.equal(v1beta.log.route, "get-user");
  assert.equal(v1beta.body.backend, "users-v1");
});

test("precedence: exact host route > wildcard host route > route without host", async () => {
  const exact = await get("/users-api/v2/users/42", { host: "api.example.com" });
  assert.equal(exact.log.route, "get-user-host");
  assert.equal(exact.body.backend, "special");
  assert.equal(exact.body.url, "/users/42");
  // case and port do not matter for host matching
  const withPort = await get("/users-api/v2/users/42", { host: "API.Example.com:8443" });
  assert.equal(withPort.log.route, "get-user-host");
  assert.equal(withPort.body.backend, "special");
  const wildcard = await get("/users-api/v2/users/42", { host: "eu.example.com" });
  assert.equal(wildcard.log.route, "get-user-wild");
  assert.equal(wildcard.body.backend, "wild");
  // the bare suffix is not matched by *.example.com
  const bare = await get("/users-api/v2/users/42", { host: "example.com" });
  assert.equal(bare.log.route, "get-user");
  assert.equal(bare.body.backend, "users-v2");
  // host beats header predicates
  const both = await get("/users-api/v2/users/42", { host: "api.example.com", "x-beta": "1" });
  assert.equal(both.log.route, "get-user-host");
  // a host route does not take other hosts' requests
  const plain = await get("/users-api/v2/users/42", { host: "gateway.test" });
  assert.equal(plain.log.route, "get-user");
  assert.equal(plain.body.backend, "users-v2");
});

test("upstream_path with parameters: /accounts/{id}/profile → /v1/acct/{id}, query kept", async () => {
  const { body, log } = await get("/users-api/v2/accounts/abc-9/profile?fields=name");
  assert.equal(log.route, "account");
  assert.equal(body.url, "/v1/acct/abc-9?fields=name");
});

test("wildcard route: the rest of the path (raw) is appended to the instance's base path", async () => {
  const deep = await get("/orders-api/v3/files/a/b/c.txt?dl=1");
  assert.equal(deep.log.route, "files");
  assert.equal(deep.body.backend, "orders");
  assert.equal(deep.body.url, "/orders-service/files/a/b/c.txt?dl=1");
  const encoded = await get("/orders-api/v3/files/x%20y/%C3%A9.bin");
  assert.equal(encoded.body.url, "/orders-service/files/x%20y/%C3%A9.bin");
  const order = await get("/orders-api/v3/orders/77");
  assert.equal(order.log.route, "get-order");
  assert.equal(order.body.url, "/orders-service/orders/77");
});

test("wildcard matches an empty rest", async () => {
  const empty = await get("/orders-api/v3/files");
  assert.equal(empty.res.status, 200, empty.res.text);
  assert.equal(empty.log.route, "files");
  assert.equal(empty.body.url, "/orders-service/files");
});

test("upstream_path with a wildcard: /static/{*rest} → /cdn/{*rest}", async () => {
  const deep = await get("/orders-api/v3/static/css/site.css?v=3");
  assert.equal(deep.log.route, "static");
  assert.equal(deep.body.url, "/orders-service/cdn/css/site.css?v=3");
  const empty = await get("/orders-api/v3/static");
  assert.equal(empty.log.route, "static");
  assert.equal(empty.body.url, "/orders-service/cdn");
});

test("environments: the host selects the environment and its pool replacement; other hosts get 404", async () => {
  const prod = await get("/catalog/items/5", { host: "catalog.example.com" });
  assert.equal(prod.body.backend, "cat-prod");
  assert.equal(prod.log.environment, "production");
  assert.equal(prod.body.url, "/items/5");
  const sandbox = await get("/catalog/items/5", { host: "eu.sandbox.example.com" });
  assert.equal(sandbox.body.backend, "cat-sandbox");
  assert.equal(sandbox.log.environment, "sandbox");
  const other = await get("/catalog/items/5", { host: "catalog.other.test" });
  assertProblem(other.res, { status: 404, code: "route_not_found" });
});

test("paths are normalized before routing: encoded unreserved characters decoded, other escapes upper-cased", async () => {
  const me = await get("/users-api/v2/users/m%65");
  assert.equal(me.log.route, "me", "/users/m%65 is /users/me");
  assert.equal(me.body.url, "/whoami");
  const id = await get("/users-api/v2/users/%7Ebob%2d1");
  assert.equal(id.log.route, "get-user");
  assert.equal(id.body.url, "/users/~bob-1");
  const lower = await get("/orders-api/v3/files/%c3%a9.bin");
  assert.equal(lower.body.url, "/orders-service/files/%C3%A9.bin");
});

test("400 invalid_path: encoded '/' or '\\', %00, malformed percent-encoding", async () => {
  for (const path of [
    "/orders-api/v3/files/a%2Fb/c",
    "/orders-api/v3/files/a%5cb",
    "/orders-api/v3/files/a%00b",
    "/orders-api/v3/files/a%zzb",
    "/orders-api/v3/files/a%2",
  ]) {
    const { res, log } = await get(path);
    assertProblem(res, { status: 400, code: "invalid_path" });
    assert.equal(log.error_code, "invalid_path", path);
    assert.equal(orders.byRequestId(log.request_id).length, 0, `${path} not proxied`);
  }
});
