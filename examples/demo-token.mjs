// Prints a demo bearer token for the orders API of examples/demo-config.json: HS256, signed
// with DEMO_JWT_SECRET (from the environment or .dev.vars, which scripts/dev.sh creates),
// valid for one hour. Usage: node examples/demo-token.mjs [subject]
import crypto from "node:crypto";
import fs from "node:fs";

let secret = process.env.DEMO_JWT_SECRET;
if (!secret && fs.existsSync(".dev.vars")) {
  const line = fs.readFileSync(".dev.vars", "utf8").split("\n").find((l) => l.startsWith("DEMO_JWT_SECRET="));
  secret = line?.slice("DEMO_JWT_SECRET=".length).trim();
}
if (!secret) {
  console.error("DEMO_JWT_SECRET is not set and .dev.vars has none: run scripts/dev.sh first");
  process.exit(1);
}
const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const now = Math.floor(Date.now() / 1000);
const claims = {
  iss: "https://demo-idp.edgegate.local",
  sub: process.argv[2] ?? "demo-user",
  aud: "orders",
  azp: "demo-app",
  scope: "orders:read orders:write",
  iat: now,
  exp: now + 3600,
};
const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
const sig = crypto.createHmac("sha256", secret).update(input).digest("base64url");
console.log(`${input}.${sig}`);
