// A Worker that speaks Cloudflare D1's REST API over a real D1 binding (env.DB).
//
// It lets crm-gateway-d1 talk HTTP to real D1 storage (Miniflare's workerd)
// exactly as it talks to api.cloudflare.com:
//
//   POST /client/v4/accounts/{account}/d1/database/{database}/query
//   POST /client/v4/accounts/{account}/d1/database/{database}/raw
//
// Body: {"sql": "...", "params": [...]} or {"batch": [{"sql", "params"}, ...]}.
// A batch runs through env.DB.batch(), which is atomic: one failing statement
// rolls back every statement of the batch, as on Cloudflare.
//
// Answers use Cloudflare's v4 envelope: {"result": [...], "success", "errors",
// "messages"}; SQL errors are HTTP 400 with {"success": false, "errors":
// [{"code": 7500, "message"}]}.  A bearer token is required (env.API_TOKEN).
//
// It also speaks Cloudflare Queues' HTTP publishing API over a real Queues
// producer binding (env.QUEUE, Miniflare's queue with its real limits):
//
//   POST /client/v4/accounts/{account}/queues/{queue_id}/messages
//        {"body", "content_type": "json"|"text", "delay_seconds"}
//   POST /client/v4/accounts/{account}/queues/{queue_id}/messages/batch
//        {"messages": [{"body", "content_type", "delay_seconds"}, ...], "delay_seconds"}
//
// and consumes that queue itself (the queue() handler below is a minimal
// consumer Worker), keeping what it received for the test hooks.
//
// Test hooks (only when env.TEST_HOOKS == "1"):
//   POST /__test__/fail {"count": N, "status": 429|503, "retry_after": S}
//       the next N API requests answer with that status (and Retry-After);
//   GET  /__test__/stats  -> {"requests": n, "statements": n}
//       how many API requests / statements reached D1 (to prove batching);
//   GET  /__test__/queue  -> [{"id", "body", "attempts"}, ...]
//       the messages the consumer received, in delivery order.

const D1_ERROR = 7500; // Cloudflare's code for a failed D1 query
const AUTH_ERROR = 10000; // Cloudflare's "Authentication error"
const NOT_FOUND = 7003; // Cloudflare's "Could not route to …"
const BAD_REQUEST = 7400;

let injected = { count: 0, status: 429, retryAfter: 1 };
const stats = { requests: 0, statements: 0 };
const received = [];

function envelope(result, init = {}) {
  return Response.json({ result, success: true, errors: [], messages: [] }, init);
}

function failure(status, code, message, headers = {}) {
  return Response.json(
    { result: null, success: false, errors: [{ code, message }], messages: [] },
    { status, headers },
  );
}

function route(url) {
  const match = url.pathname.match(
    /^\/client\/v4\/accounts\/([^/]+)\/d1\/database\/([^/]+)\/(query|raw)$/,
  );
  return match ? { account: match[1], database: match[2], mode: match[3] } : null;
}

function queueRoute(url) {
  const match = url.pathname.match(
    /^\/client\/v4\/accounts\/([^/]+)\/queues\/([^/]+)\/messages(\/batch)?$/,
  );
  return match ? { account: match[1], queue: match[2], batch: Boolean(match[3]) } : null;
}

function queueMessage(item) {
  const contentType = item?.content_type ?? "json";
  if (!["json", "text"].includes(contentType)) {
    throw new TypeError(`content_type must be "json" or "text", not ${JSON.stringify(contentType)}`);
  }
  if (contentType === "text" && typeof item.body !== "string") {
    throw new TypeError("a text message needs a string body");
  }
  const options = { contentType };
  if (item.delay_seconds !== undefined) options.delaySeconds = Number(item.delay_seconds);
  return { body: item.body, ...options };
}

async function publish(env, target, body) {
  if (target.batch) {
    if (!Array.isArray(body.messages)) throw new TypeError("'messages' must be an array");
    const options = {};
    if (body.delay_seconds !== undefined) options.delaySeconds = Number(body.delay_seconds);
    await env.QUEUE.sendBatch(body.messages.map(queueMessage), options);
  } else {
    const { body: messageBody, ...options } = queueMessage(body);
    await env.QUEUE.send(messageBody, options);
  }
}

function statements(body) {
  const list = Array.isArray(body.batch) ? body.batch : [body];
  if (list.length === 0) throw new TypeError("batch is empty");
  return list.map((item) => {
    if (typeof item?.sql !== "string" || item.sql.trim() === "") {
      throw new TypeError("every statement needs a non-empty 'sql' string");
    }
    const params = item.params ?? [];
    if (!Array.isArray(params)) throw new TypeError("'params' must be an array");
    return { sql: item.sql, params };
  });
}

function shape(result, mode) {
  const meta = {
    changed_db: (result.meta?.changes ?? 0) > 0,
    changes: result.meta?.changes ?? 0,
    duration: result.meta?.duration ?? 0,
    last_row_id: result.meta?.last_row_id ?? 0,
    rows_read: result.meta?.rows_read ?? 0,
    rows_written: result.meta?.rows_written ?? 0,
    size_after: result.meta?.size_after ?? 0,
    served_by_primary: true,
  };
  if (mode === "raw") {
    const [columns, ...rows] = result.rows;
    return { results: { columns: columns ?? [], rows }, success: true, meta };
  }
  return { results: result.results ?? [], success: true, meta };
}

async function runQuery(env, body, mode) {
  const list = statements(body);
  stats.statements += list.length;
  const prepared = list.map(({ sql, params }) => env.DB.prepare(sql).bind(...params));
  if (mode === "raw") {
    // raw() gives arrays with a header row; a batch must stay atomic, so a
    // raw batch goes through batch() and its objects are turned into arrays.
    if (prepared.length === 1) {
      const rows = await prepared[0].raw({ columnNames: true });
      return [shape({ rows, meta: {} }, "raw")];
    }
    const results = await env.DB.batch(prepared);
    return results.map((r) => {
      const columns = r.results.length ? Object.keys(r.results[0]) : [];
      const rows = r.results.map((row) => columns.map((c) => row[c]));
      return shape({ rows: [columns, ...rows], meta: r.meta }, "raw");
    });
  }
  const results = prepared.length === 1 ? [await prepared[0].all()] : await env.DB.batch(prepared);
  return results.map((r) => shape(r, "query"));
}

function cleanMessage(error) {
  // workerd prefixes D1 errors with "D1_ERROR: "; keep SQLite's own words.
  const text = String(error?.message ?? error);
  return text.replace(/^D1_(?:ERROR|EXEC_ERROR|TYPE_ERROR|COLUMN_NOTFOUND):\s*/, "");
}

async function handleQueue(request, env, target) {
  if (request.method !== "POST") return failure(405, BAD_REQUEST, "Method not allowed");
  if ((request.headers.get("Authorization") ?? "") !== `Bearer ${env.API_TOKEN}`) {
    return failure(401, AUTH_ERROR, "Authentication error");
  }
  if (target.account !== env.ACCOUNT_ID || target.queue !== env.QUEUE_ID) {
    return failure(404, NOT_FOUND, "Queue not found");
  }
  stats.requests += 1;
  if (injected.count > 0) {
    injected.count -= 1;
    const headers = {};
    if (injected.retryAfter !== null) headers["Retry-After"] = String(injected.retryAfter);
    return failure(injected.status, injected.status === 429 ? 971 : 10001, "Try again", headers);
  }
  let body;
  try {
    body = await request.json();
  } catch {
    return failure(400, BAD_REQUEST, "Request body is not valid JSON");
  }
  try {
    await publish(env, target, body);
  } catch (error) {
    const message = String(error?.message ?? error);
    const tooLarge = /exceeds|too large|limit/i.test(message);
    return failure(tooLarge ? 413 : 400, tooLarge ? 11007 : BAD_REQUEST, message);
  }
  return envelope(null);
}

export default {
  async queue(batch) {
    for (const message of batch.messages) {
      received.push({ id: message.id, body: message.body, attempts: message.attempts });
      message.ack();
    }
  },

  async fetch(request, env) {
    const url = new URL(request.url);
    const hooks = env.TEST_HOOKS === "1";

    if (hooks && url.pathname === "/__test__/fail" && request.method === "POST") {
      const body = await request.json();
      injected = {
        count: Number(body.count ?? 1),
        status: Number(body.status ?? 429),
        retryAfter: body.retry_after ?? 1,
      };
      return envelope(injected);
    }
    if (hooks && url.pathname === "/__test__/stats") {
      return envelope({ ...stats });
    }
    if (hooks && url.pathname === "/__test__/queue") {
      return envelope(received);
    }
    if (url.pathname === "/health") return envelope({ ok: true });

    const queueTarget = queueRoute(url);
    if (queueTarget) return handleQueue(request, env, queueTarget);

    const target = route(url);
    if (!target) return failure(404, NOT_FOUND, `No route for that URI: ${url.pathname}`);
    if (request.method !== "POST") return failure(405, BAD_REQUEST, "Method not allowed");

    const auth = request.headers.get("Authorization") ?? "";
    if (auth !== `Bearer ${env.API_TOKEN}`) {
      return failure(401, AUTH_ERROR, "Authentication error");
    }
    if (target.account !== env.ACCOUNT_ID || target.database !== env.DATABASE_ID) {
      return failure(404, NOT_FOUND, "Could not route to the requested database");
    }

    stats.requests += 1;
    if (injected.count > 0) {
      injected.count -= 1;
      const headers = {};
      if (injected.retryAfter !== null) headers["Retry-After"] = String(injected.retryAfter);
      const message = injected.status === 429 ? "Too many requests" : "Service unavailable";
      return failure(injected.status, injected.status === 429 ? 971 : 7500, message, headers);
    }

    let body;
    try {
      body = await request.json();
    } catch {
      return failure(400, BAD_REQUEST, "Request body is not valid JSON");
    }
    try {
      return envelope(await runQuery(env, body, target.mode));
    } catch (error) {
      if (error instanceof TypeError && !String(error.message).startsWith("D1_")) {
        return failure(400, BAD_REQUEST, error.message);
      }
      return failure(400, D1_ERROR, cleanMessage(error));
    }
  },
};
