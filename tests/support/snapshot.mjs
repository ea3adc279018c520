// Registry snapshots for end-to-end tests, built by the operator CLI (`edgegate snapshot
// build`, crate cli/) exactly as an operator would: JSON in, KV values (binary shards, the
// manifest last) out.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "./gateway.mjs";
import { sha256 } from "./util.mjs";

const run = promisify(execFile);

/** The KV key of the current snapshot's manifest (edgegate_core::snapshot::MANIFEST_KEY). */
export const MANIFEST_KEY = "snapshot:manifest";
/** The KV key of shard `i` of the snapshot whose encoding has SHA-256 `sha` (hex). */
export const shardKey = (sha, i) => `snapshot:${sha}:${i}`;
/** A snapshot credential's `key` for an API key: the hex SHA-256 of the key. */
export const apiKeyDigest = (key) => sha256(Buffer.from(key, "utf8"));

let binary;

/**
 * The path of the `edgegate` binary: $EDGEGATE_CLI if set; else the debug build in the cargo
 * target dir ($CARGO_TARGET_DIR or target/), which scripts/test.sh builds before the
 * end-to-end step; else (a fresh checkout running one test file) `cargo build -p
 * edgegate-cli`, once per process.
 */
export function cliBinary() {
  if (process.env.EDGEGATE_CLI) return Promise.resolve(process.env.EDGEGATE_CLI);
  binary ??= (async () => {
    const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(REPO_ROOT, "target");
    const built = path.join(targetDir, "debug", process.platform === "win32" ? "edgegate.exe" : "edgegate");
    if (existsSync(built)) return built;
    const cargoBin = path.join(os.homedir(), ".cargo/bin");
    const { stdout } = await run(
      "cargo",
      ["build", "-p", "edgegate-cli", "--bin", "edgegate", "--message-format=json-render-diagnostics"],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, PATH: `${cargoBin}${path.delimiter}${process.env.PATH ?? ""}` },
        maxBuffer: 64 * 1024 * 1024,
        timeout: 300_000,
      },
    );
    for (const line of stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      const msg = JSON.parse(line);
      if (msg.reason === "compiler-artifact" && msg.target?.name === "edgegate" && msg.executable) {
        return msg.executable;
      }
    }
    throw new Error("cargo build -p edgegate-cli reported no `edgegate` executable");
  })();
  return binary;
}

/**
 * Runs the CLI on `doc` (an object, or raw JSON text). Returns
 * { code, stdout, stderr } when it fails (`allowFailure`), else
 * { summary, manifest, entries: [{ key, value: Buffer }], kv: { key: value } } with the
 * values in upload order (shards, then the manifest as text): ready for startGateway's `kv`
 * or Gateway.putKv.
 */
export async function buildSnapshot(doc, { shardBytes, allowFailure = false } = {}) {
  const exe = await cliBinary();
  const dir = await mkdtemp(path.join(os.tmpdir(), "edgegate-snapshot-"));
  try {
    const input = path.join(dir, "snapshot.json");
    await writeFile(input, typeof doc === "string" ? doc : JSON.stringify(doc));
    const out = path.join(dir, "out");
    const args = ["snapshot", "build", input, "--out", out];
    if (shardBytes !== undefined) args.push("--shard-bytes", String(shardBytes));
    let stdout;
    try {
      ({ stdout } = await run(exe, args, { timeout: 60_000 }));
    } catch (err) {
      if (allowFailure && typeof err.code === "number") {
        return { code: err.code, stdout: err.stdout, stderr: err.stderr };
      }
      throw new Error(`edgegate ${args.join(" ")} failed (${err.code}): ${err.stderr ?? err.message}`);
    }
    const list = JSON.parse(await readFile(path.join(out, "kv.json"), "utf8"));
    const entries = [];
    for (const { key, file } of list) {
      entries.push({ key, value: await readFile(path.join(out, file)) });
    }
    const manifestEntry = entries.at(-1);
    if (manifestEntry?.key !== MANIFEST_KEY) throw new Error(`kv.json does not end with ${MANIFEST_KEY}`);
    manifestEntry.value = manifestEntry.value.toString("utf8");
    return {
      code: 0,
      summary: stdout.trim(),
      manifest: JSON.parse(manifestEntry.value),
      entries,
      kv: Object.fromEntries(entries.map((e) => [e.key, e.value])),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Uploads a built snapshot's values in order (shards first, the manifest last). */
export async function uploadSnapshot(gw, built) {
  for (const { key, value } of built.entries) await gw.putKv(key, value);
}
