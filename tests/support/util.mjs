// Small shared helpers: gates, bounded waits, hashing, deterministic data.
import { createHash } from "node:crypto";

/** sha256 hex of a Buffer / Uint8Array. */
export function sha256(buf) {
  return createHash("sha256").update(buf).digest("hex");
}

/**
 * A one-shot gate: `await gate.promise` until someone calls `gate.open()`.
 * Used to hold a backend (or a client) at a known point until the test says go.
 */
export function createGate() {
  let open;
  const promise = new Promise((resolve) => (open = resolve));
  const gate = {
    isOpen: false,
    promise,
    open() {
      gate.isOpen = true;
      open();
    },
  };
  return gate;
}

/** Resolves after `ms` (only for short pacing; prefer event-based waits). */
export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Races a promise against a bounded timeout; rejects with `what` in the message on timeout.
 * The timer is cleared either way, so it never keeps the process alive.
 */
export function withTimeout(promise, ms, what = "operation") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value; bounded by `timeoutMs`.
 * Returns that value, or throws naming `what`.
 */
export async function pollUntil(fn, { timeoutMs = 5000, intervalMs = 25, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (let i = 0; ; i++) {
    last = await fn();
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms (${i + 1} polls) waiting for ${what}`);
    }
    await delay(intervalMs);
  }
}

const dataCache = new Map();

/**
 * `size` bytes of deterministic pseudo-random data (xorshift32 from `seed`), cached.
 * Returns { buf, sha256 }.
 */
export function deterministicData(size, seed = 0x9e3779b9) {
  const key = `${size}:${seed}`;
  let entry = dataCache.get(key);
  if (!entry) {
    const words = new Uint32Array(Math.ceil(size / 4));
    let x = seed >>> 0 || 1;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      words[i] = x;
    }
    const buf = Buffer.from(words.buffer, 0, size);
    entry = { buf, sha256: sha256(buf) };
    dataCache.set(key, entry);
  }
  return entry;
}

export const MB = 1024 * 1024;
