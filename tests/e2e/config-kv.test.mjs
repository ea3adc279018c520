// Config from KV: `config:active` → version id, `config:version:<id>` → document.
// A version that fails validation (or is missing) is never activated: the previous one keeps
// serving and `config_rejected` is logged; a valid one becomes active within the refresh
// interval; with no valid config the answer is 503 no_config; the cron refreshes at once.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { startGateway, onSpin } from "../support/gateway.mjs";
import { NO_CRON } from "../support/spin-gaps.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { delay } from "../support/util.mjs";

const REFRESH_MS = 200;

function configFor(backend, extraRoutes = []) {
  return {
    pools: { p: { instances: [{ url: backend.url }] } },
    apis: [
      {
        name: "cfg",
        base_path: "/cfg",
        pool: "p",
        routes: [{ name: "ping", methods: ["GET"], path: "/ping" }, ...extraRoutes],
      },
    ],
  };
}

/** Fails validation: a route names a pool that does not exist. */
function invalidConfig(backend) {
  const c = configFor(backend);
  c.apis[0].routes.push({ name: "broken", methods: ["GET"], path: "/broken", pool: "no-such-pool" });
  return c;
}

let backend;
before(async () => {
  backend = await startBackend("cfg");
});
after(async () => {
  await closeAll(backend);
});

describe("refresh from KV (refresh interval 200 ms)", () => {
  let gw;
  before(async () => {
    gw = await startGateway({ config: configFor(backend), version: "v1", refreshMs: REFRESH_MS });
  });
  after(async () => {
    await gw?.close();
  });

  /** Requests /cfg/ping every 50 ms until `done(log)` or the bounded time; returns the logs. */
  async function pingUntil(done, { timeoutMs = 3000, path = "/cfg/ping" } = {}) {
    const logs = [];
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const { res, log } = await gw.requestLogged({ path });
      logs.push({ res, log });
      if (await done(log, res)) return logs;
      await delay(50);
    }
    throw new Error(`condition not reached in ${timeoutMs} ms; last: ${JSON.stringify(logs.at(-1)?.log)}`);
  }

  test("v1 is active and logged as config_activated", async () => {
    const { res, log } = await gw.requestLogged({ path: "/cfg/ping" });
    assert.equal(res.status, 200);
    assert.equal(log.config_version, "v1");
    const ev = await gw.logs.waitForEvent("config_activated", (e) => e.version === "v1");
    assert.equal(ev.previous, null);
  });

  test("pointer to a version that fails validation: never activated, v1 keeps serving, config_rejected logged", async () => {
    const mark = gw.logs.mark();
    await gw.putVersion("bad", invalidConfig(backend));
    await gw.activate("bad");
    const logs = await pingUntil(() => gw.logs.events("config_rejected", mark).some((e) => e.version === "bad"));
    for (const { res, log } of logs) {
      assert.equal(res.status, 200);
      assert.equal(log.config_version, "v1");
    }
    const ev = gw.logs.events("config_rejected", mark).find((e) => e.version === "bad");
    assert.equal(ev.serving, "v1");
    assert.ok(Array.isArray(ev.errors) && ev.errors.length >= 1, JSON.stringify(ev));
    assert.ok(ev.errors.some((e) => /no-such-pool/.test(e.message) && /routes\[1\]\.pool/.test(e.path)), JSON.stringify(ev.errors));
    // Still v1 for a while after (several refresh intervals), and the new route does not exist.
    for (let i = 0; i < 4; i++) {
      await delay(REFRESH_MS / 2);
      const { log } = await gw.requestLogged({ path: "/cfg/ping" });
      assert.equal(log.config_version, "v1");
    }
    const broken = await gw.requestLogged({ path: "/cfg/broken" });
    assertProblem(broken.res, { status: 404, code: "route_not_found" });
    assert.equal(broken.log.config_version, "v1");
    assert.equal(gw.logs.events("config_activated", mark).length, 0, "nothing activated");
    const rejections = gw.logs.events("config_rejected", mark).filter((e) => e.version === "bad");
    assert.equal(rejections.length, 1, "a rejected version is logged once, not on every refresh");
  });

  /** A missing version is reported as config_version_missing (retried each refresh) or config_rejected. */
  const MISSING_EVENTS = ["config_version_missing", "config_rejected"];
  const missingEvents = (version, from) =>
    gw.logs.entries.slice(from).filter((e) => e.kind === "event" && MISSING_EVENTS.includes(e.event) && e.version === version);

  test("pointer to a missing version: never activated, v1 keeps serving, the miss is logged", async () => {
    const mark = gw.logs.mark();
    await gw.activate("missing");
    const logs = await pingUntil(() => missingEvents("missing", mark).length > 0);
    for (const { res, log } of logs) {
      assert.equal(res.status, 200);
      assert.equal(log.config_version, "v1");
    }
    const ev = missingEvents("missing", mark)[0];
    assert.equal(ev.serving, "v1");
    assert.ok(JSON.stringify(ev).includes("config:version:missing"), JSON.stringify(ev));
    for (let i = 0; i < 3; i++) {
      await delay(REFRESH_MS / 2);
      const { log } = await gw.requestLogged({ path: "/cfg/ping" });
      assert.equal(log.config_version, "v1");
    }
    assert.equal(gw.logs.events("config_activated", mark).length, 0);
  });

  test("pointer moved before its version is readable (KV is eventually consistent): activated once it appears", async () => {
    const mark = gw.logs.mark();
    await gw.activate("late");
    await pingUntil(() => missingEvents("late", mark).length > 0);
    // The document shows up after the pointer (another KV key, propagated later).
    await gw.putVersion("late", configFor(backend, [{ name: "late-route", methods: ["GET"], path: "/late" }]));
    try {
      await pingUntil((log) => log.config_version === "late", { timeoutMs: REFRESH_MS * 10 });
    } catch (err) {
      throw new Error(
        `version "late" was never activated after its document appeared (pointer unchanged); still serving ${gw.logs.access(mark).at(-1)?.config_version}: ${err.message}`,
      );
    } finally {
      // Leave the pointer on v1 for the next tests either way.
      await gw.activate("v1");
      await pingUntil((log) => log.config_version === "v1");
    }
  });

  test("pointer to a version that is not JSON: rejected, v1 keeps serving", async () => {
    const mark = gw.logs.mark();
    await gw.putVersion("garbled", '{"pools": {');
    await gw.activate("garbled");
    const logs = await pingUntil(() => gw.logs.events("config_rejected", mark).some((e) => e.version === "garbled"));
    for (const { log } of logs) assert.equal(log.config_version, "v1");
    assert.equal(gw.logs.events("config_activated", mark).length, 0);
  });

  test("a valid v2 becomes active within the refresh interval", async () => {
    const mark = gw.logs.mark();
    await gw.putVersion("v2", configFor(backend, [{ name: "pong", methods: ["GET"], path: "/pong" }]));
    const movedAt = performance.now();
    await gw.activate("v2");
    await pingUntil((log) => log.config_version === "v2", { timeoutMs: 3000 });
    const took = performance.now() - movedAt;
    // one interval, plus one 50 ms poll step and slack for a loaded machine
    assert.ok(took <= REFRESH_MS + 400, `v2 active after ${took.toFixed(0)} ms (refresh ${REFRESH_MS} ms)`);
    const ev = await gw.logs.waitForEvent("config_activated", (e) => e.version === "v2", { from: mark });
    assert.equal(ev.previous, "v1");
    const pong = await gw.requestLogged({ path: "/cfg/pong" });
    assert.equal(pong.res.status, 200);
    assert.equal(pong.log.route, "pong");
    assert.equal(pong.log.config_version, "v2");
  });

  test("rollback: moving the pointer back to v1 activates v1 again", async () => {
    await gw.activate("v1");
    await pingUntil((log) => log.config_version === "v1");
    const { res } = await gw.requestLogged({ path: "/cfg/pong" });
    assert.equal(res.status, 404);
  });
});

describe("no valid config at all", () => {
  let gw;
  before(async () => {
    gw = await startGateway({ config: null, refreshMs: REFRESH_MS });
  });
  after(async () => {
    await gw?.close();
  });

  test("no pointer → 503 no_config (problem+json), config_version null", async () => {
    const { res, log } = await gw.requestLogged({ path: "/cfg/ping" });
    assertProblem(res, { status: 503, code: "no_config" });
    assert.equal(log.status, 503);
    assert.equal(log.error_code, "no_config");
    assert.equal(log.config_version, null);
    assert.equal(log.attempts, 0);
  });

  test("pointer to an invalid version only → still 503 no_config, config_rejected with serving null", async () => {
    const mark = gw.logs.mark();
    await gw.putVersion("bad", invalidConfig(backend));
    await gw.activate("bad");
    const deadline = performance.now() + 3000;
    let ev;
    while (!ev && performance.now() < deadline) {
      const { res } = await gw.requestLogged({ path: "/cfg/ping" });
      assertProblem(res, { status: 503, code: "no_config" });
      ev = gw.logs.events("config_rejected", mark).find((e) => e.version === "bad");
      if (!ev) await delay(50);
    }
    assert.ok(ev, "config_rejected logged");
    assert.equal(ev.serving, null);
  });

  test("then a valid version is picked up", async () => {
    await gw.putVersion("good", configFor(backend));
    await gw.activate("good");
    const deadline = performance.now() + 3000;
    let last;
    while (performance.now() < deadline) {
      last = await gw.requestLogged({ path: "/cfg/ping" });
      if (last.res.status === 200) break;
      await delay(50);
    }
    assert.equal(last.res.status, 200, last.res.text);
    assert.equal(last.log.config_version, "good");
  });
});

describe("cron (scheduled) refresh", { skip: onSpin && NO_CRON }, () => {
  let gw;
  before(async () => {
    // A refresh interval far longer than the test: only the cron can switch versions.
    gw = await startGateway({ config: configFor(backend), version: "v1", refreshMs: 600_000 });
  });
  after(async () => {
    await gw?.close();
  });

  test("the cron activates a new version at once and logs config_check", async () => {
    const first = await gw.requestLogged({ path: "/cfg/ping" });
    assert.equal(first.log.config_version, "v1");
    await gw.putVersion("v2", configFor(backend));
    await gw.activate("v2");
    // Without the cron, requests keep v1 (interval not due).
    const still = await gw.requestLogged({ path: "/cfg/ping" });
    assert.equal(still.log.config_version, "v1");
    const mark = gw.logs.mark();
    await gw.scheduled("* * * * *");
    const check = await gw.logs.waitForEvent("config_check", () => true, { from: mark });
    assert.equal(check.cron, "* * * * *");
    assert.match(check.outcome, /Activated.*v2/);
    await gw.logs.waitForEvent("config_activated", (e) => e.version === "v2", { from: mark });
    const after = await gw.requestLogged({ path: "/cfg/ping" });
    assert.equal(after.log.config_version, "v2");
  });

  test("the cron with an unchanged pointer logs config_check and changes nothing", async () => {
    const mark = gw.logs.mark();
    await gw.scheduled();
    const check = await gw.logs.waitForEvent("config_check", () => true, { from: mark });
    assert.match(check.outcome, /Unchanged.*v2/);
    assert.equal(gw.logs.events("config_activated", mark).length, 0);
  });

  test("the cron with an invalid version logs config_rejected and keeps serving", async () => {
    await gw.putVersion("bad", invalidConfig(backend));
    await gw.activate("bad");
    const mark = gw.logs.mark();
    await gw.scheduled();
    const check = await gw.logs.waitForEvent("config_check", () => true, { from: mark });
    assert.match(check.outcome, /Rejected.*bad/);
    const rej = await gw.logs.waitForEvent("config_rejected", (e) => e.version === "bad", { from: mark });
    assert.equal(rej.serving, "v2");
    const { log } = await gw.requestLogged({ path: "/cfg/ping" });
    assert.equal(log.config_version, "v2");
  });
});
