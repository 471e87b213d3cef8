// Start a local D1 (Miniflare's workerd) behind worker.mjs, the D1 REST shim.
//
//   node launch.mjs --persist DIR [--port 0] [--host 127.0.0.1] [--token T]
//                   [--account ACCOUNT] [--database DATABASE] [--queue QUEUE_ID]
//                   [--test-hooks]
//
// Prints one line "D1_LOCAL_URL=http://host:port/client/v4" when ready, then
// serves until SIGTERM/SIGINT.  No outside fetches (cf: false); D1 data lives
// under --persist, so it survives a restart.
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parseArgs } from "node:util";
import { Miniflare } from "miniflare";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    persist: { type: "string" },
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    token: { type: "string", default: "local-d1-token" },
    account: { type: "string", default: "local-account" },
    database: { type: "string", default: "local-database" },
    queue: { type: "string", default: "local-queue" },
    "test-hooks": { type: "boolean", default: false },
  },
});
if (!values.persist) {
  console.error("--persist DIR is required (where the D1 data is kept)");
  process.exit(2);
}

const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(here, "worker.mjs"),
  compatibilityDate: "2025-09-01",
  host: values.host,
  port: Number(values.port),
  cf: false,
  d1Databases: { DB: values.database },
  d1Persist: path.resolve(values.persist),
  // One queue, published to over the HTTP API and consumed by the same Worker.
  queueProducers: { QUEUE: { queueName: values.queue } },
  queueConsumers: { [values.queue]: { maxBatchSize: 100, maxBatchTimeout: 1 } },
  bindings: {
    API_TOKEN: values.token,
    ACCOUNT_ID: values.account,
    DATABASE_ID: values.database,
    QUEUE_ID: values.queue,
    TEST_HOOKS: values["test-hooks"] ? "1" : "0",
  },
});

const url = await mf.ready;
console.log(`D1_LOCAL_URL=${new URL("/client/v4", url).href}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
