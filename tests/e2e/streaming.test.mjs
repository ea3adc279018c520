// Streaming: ≥ 10 MB bodies pass through intact in both directions, and they stream (the
// gateway never waits for a whole body before passing bytes on).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startGateway, uniqueId } from "../support/gateway.mjs";
import { startBackend, closeAll, download, uploadSink } from "../support/backends.mjs";
import { openRequest, writeAll } from "../support/client.mjs";
import { createGate, deterministicData, withTimeout, MB } from "../support/util.mjs";

const SIZE = 12 * MB;
let gw, dl, up;

before(async () => {
  dl = await startBackend("download");
  up = await startBackend("upload", uploadSink());
  gw = await startGateway({
    config: {
      pools: {
        dl: { instances: [{ url: dl.url }] },
        up: { instances: [{ url: up.url }] },
      },
      apis: [
        {
          name: "files",
          base_path: "/files",
          pool: "dl",
          routes: [
            { name: "download", methods: ["GET"], path: "/download/{name}" },
            { name: "upload", methods: ["PUT", "POST"], path: "/upload/{name}", pool: "up" },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(dl, up);
});

/** Reads a response, hashing as it goes; `onFirstBytes` fires once with the first chunk. */
function consume(res, onFirstBytes) {
  const hash = createHash("sha256");
  const state = { received: 0, firstAt: null };
  const done = new Promise((resolve, reject) => {
    res.on("data", (c) => {
      if (state.received === 0) {
        state.firstAt = performance.now();
        onFirstBytes?.(c);
      }
      state.received += c.length;
      hash.update(c);
    });
    res.on("end", () => resolve({ length: state.received, sha256: hash.digest("hex") }));
    res.on("error", reject);
    res.on("aborted", () => reject(new Error("response aborted")));
  });
  return { state, done };
}

test("download ≥ 10 MB streams: client gets the first bytes while the backend is paused mid-stream, then the whole body intact", async () => {
  const data = deterministicData(SIZE, 1);
  const gate = createGate();
  const pauseAfter = 1 * MB;
  dl.behaviour = download({ data: data.buf, pauseAfter, gate });
  const rid = uniqueId("dl");
  const { req, response } = openRequest(gw.port, {
    path: "/files/download/big.bin",
    headers: { "x-request-id": rid },
  });
  req.end();
  try {
    const res = await withTimeout(response, 10_000, "the download response head while the backend is paused mid-body (a buffering gateway never sends it)");
    assert.equal(res.statusCode, 200);
    let firstBytes;
    const gotFirst = new Promise((resolve) => (firstBytes = resolve));
    const { state, done } = consume(res, firstBytes);
    // The backend stops after `pauseAfter` bytes; the client must see bytes before it resumes.
    await withTimeout(gotFirst, 10_000, "the first downloaded bytes while the backend is paused (buffered instead of streamed?)");
    const record = dl.byRequestId(rid)[0];
    assert.ok(record, "backend saw the request");
    assert.equal(gate.isOpen, false, "backend still paused when the first bytes arrived");
    assert.equal(record.sentAll, undefined, "backend had not sent the rest");
    assert.ok(state.received > 0 && state.received <= pauseAfter, `received ${state.received} bytes before the pause was lifted`);
    gate.open();
    const result = await withTimeout(done, 30_000, "the rest of the download");
    assert.equal(result.length, SIZE, "downloaded length");
    assert.equal(result.sha256, data.sha256, "downloaded sha256");
    assert.equal(res.headers["content-length"], String(SIZE), "Content-Length passed through to the client");
  } finally {
    gate.open();
    req.destroy();
  }
});

test("upload ≥ 10 MB (PUT, fixed length) streams: backend gets the first chunk before the client sends the rest, body intact", async () => {
  const data = deterministicData(SIZE, 2);
  const firstChunk = 256 * 1024;
  const rid = uniqueId("up");
  const { req, response } = openRequest(gw.port, {
    method: "PUT",
    path: "/files/upload/big.bin",
    headers: {
      "x-request-id": rid,
      "content-type": "application/octet-stream",
      "content-length": String(SIZE),
    },
  });
  response.catch(() => {});
  let firstChunkError = null;
  try {
    await writeAll(req, data.buf.subarray(0, firstChunk));
    // Hold the rest back until the backend reports the first chunk.
    try {
      const rec = await up.waitForFirstChunk((r) => r.headers["x-request-id"] === rid, 10_000);
      assert.ok(rec.bodyLength <= firstChunk, `backend had ${rec.bodyLength} bytes; the client had sent ${firstChunk}`);
    } catch (err) {
      firstChunkError = err;
    }
    await writeAll(req, data.buf.subarray(firstChunk));
    req.end();
    const res = await withTimeout(response, 30_000, "upload response");
    const chunks = [];
    for await (const c of res) chunks.push(c);
    const body = JSON.parse(Buffer.concat(chunks).toString());
    assert.equal(res.statusCode, 200, JSON.stringify(body));
    assert.equal(body.bodyLength, SIZE, "backend received length");
    assert.equal(body.bodySha256, data.sha256, "backend received sha256");
  } finally {
    req.destroy();
  }
  if (firstChunkError) {
    throw new Error(`upload was not streamed: ${firstChunkError.message}`);
  }
});

test("fixed-length upload: backend sees Content-Length equal to the size (not chunked)", async () => {
  const data = deterministicData(10 * MB, 3);
  const rid = uniqueId("cl");
  const { req, response } = openRequest(gw.port, {
    method: "POST",
    path: "/files/upload/fixed.bin",
    headers: { "x-request-id": rid, "content-length": String(data.buf.length) },
  });
  try {
    await writeAll(req, data.buf);
    req.end();
    const res = await withTimeout(response, 30_000, "upload response");
    for await (const _ of res);
    assert.equal(res.statusCode, 200);
  } finally {
    req.destroy();
  }
  const rec = up.byRequestId(rid)[0];
  assert.ok(rec, "backend saw the request");
  assert.equal(rec.bodyLength, data.buf.length);
  assert.equal(rec.bodySha256, data.sha256);
  assert.equal(
    rec.headers["content-length"],
    String(data.buf.length),
    `backend should see content-length ${data.buf.length}; it saw content-length=${rec.headers["content-length"]} transfer-encoding=${rec.headers["transfer-encoding"]}`,
  );
  assert.equal(rec.headers["transfer-encoding"], undefined, "no transfer-encoding on a fixed-length upload");
});

test("chunked upload (no Content-Length, ≥ 10 MB POST) passes through intact", async () => {
  const data = deterministicData(10 * MB + 12345, 4);
  const rid = uniqueId("ch");
  const { req, response } = openRequest(gw.port, {
    method: "POST",
    path: "/files/upload/chunked.bin",
    headers: { "x-request-id": rid, "transfer-encoding": "chunked" },
  });
  try {
    await writeAll(req, data.buf, 100_000);
    req.end();
    const res = await withTimeout(response, 30_000, "upload response");
    const chunks = [];
    for await (const c of res) chunks.push(c);
    assert.equal(res.statusCode, 200);
    const body = JSON.parse(Buffer.concat(chunks).toString());
    assert.equal(body.bodyLength, data.buf.length);
    assert.equal(body.bodySha256, data.sha256);
  } finally {
    req.destroy();
  }
});

test("empty fixed-length body (POST, Content-Length: 0): backend sees content-length 0", async () => {
  const rid = uniqueId("empty");
  const res = await gw.request({
    method: "POST",
    path: "/files/upload/empty.bin",
    headers: { "x-request-id": rid, "content-length": "0" },
    body: "",
  });
  assert.equal(res.status, 200, res.text);
  const body = res.json();
  assert.equal(body.bodyLength, 0);
  assert.equal(body.contentLength, "0");
  assert.equal(body.transferEncoding, null);
});
