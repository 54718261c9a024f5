// A real PocketBase v0.40.4 running integrations/pocketbase/pb_hooks (realtime.pb.js) feeds our
// Caddy, whose realtime block comes from `caddy realtime import-pocketbase`. The same SDK code
// subscribes on both servers as a guest and as two users holding PocketBase-issued tokens; every
// action goes through PocketBase's REST API once; then who received what on our Caddy must equal
// what PocketBase's own realtime delivered. A second phase takes Caddy away from the hook (a proxy
// holds the admin connections) and checks that PocketBase's requests still succeed and that the
// queued events reach our clients once, when Caddy is back. All of it runs on one Caddy node and
// again on three nodes sharing a NATS JetStream stream.
import "../lib/setup.js";
import test from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import PocketBase from "pocketbase";
import { PocketBaseServer, CaddyServer, E2E_DIR, USER_PASSWORD } from "../diff/servers.js";
import { startProxy } from "../lib/proxy.js";
import { waitFor, freePorts, delay } from "../lib/util.js";

const execFileP = promisify(execFile);
const HOOKS_DIR = path.resolve(E2E_DIR, "..", "integrations", "pocketbase", "pb_hooks");
const CADDY_BIN = process.env.E2E_CADDY_BIN || path.join(E2E_DIR, ".bin", "caddy");
const MAX_EVENT_BYTES = 64 * 1024;
const OWNER_RULE = "status = 'published' || author = @request.auth.id";

/** README's Caddyfile for the site that imports realtime.caddy and proxies the rest to PocketBase. */
function readmeSiteBlock() {
	const readme = fs.readFileSync(path.join(E2E_DIR, "..", "README.md"), "utf8");
	const section = readme.split("\n## Moving PocketBase's realtime to Caddy\n")[1]?.split("\n## ")[0] ?? "";
	const block = [...section.matchAll(/^( *)```caddyfile\n([\s\S]*?)^\1```$/gm)]
		.map(([, indent, code]) => code.replace(new RegExp(`^${indent}`, "gm"), ""))
		.find((code) => code.includes("import realtime.caddy"));
	assert.ok(block, "README's migration section has the site block importing realtime.caddy");
	return block;
}

/** JSON with object keys sorted, so equal records compare equal as text. */
function canon(v) {
	if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
	if (v && typeof v === "object") {
		return `{${Object.keys(v)
			.sort()
			.map((k) => `${JSON.stringify(k)}:${canon(v[k])}`)
			.join(",")}}`;
	}
	return JSON.stringify(v);
}

/** A JetStream nats-server on a free 127.0.0.1 port, for the cluster run; stopped with t. */
async function startNats(t) {
	const bin = process.env.E2E_NATS_BIN || path.join(E2E_DIR, ".bin", "nats-server");
	assert.ok(fs.existsSync(bin), `nats-server not found at ${bin}: e2e/run.sh hook builds it`);
	const [natsPort] = await freePorts(1);
	const dir = fs.mkdtempSync(path.join(process.env.E2E_TMPDIR || os.tmpdir(), "hook-nats-"));
	const proc = spawn(bin, ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", dir], { stdio: "ignore" });
	const exited = new Promise((resolve) => proc.once("exit", resolve));
	t.after(async () => {
		proc.kill("SIGTERM");
		await exited;
		fs.rmSync(dir, { recursive: true, force: true });
	});
	await waitFor(
		() =>
			new Promise((resolve) => {
				const s = net.connect(natsPort, "127.0.0.1", () => (s.end(), resolve(true)));
				s.on("error", () => resolve(false));
			}),
		15_000,
		"nats-server listening",
		100,
	);
	return `nats://127.0.0.1:${natsPort}`;
}

test("PocketBase + realtime.pb.js + imported rules: our Caddy delivers what PocketBase's realtime delivers", { timeout: 60_000 }, (t) =>
	migration(t, { nodes: 1 }),
);

// The issue's cluster: three nodes on one JetStream stream; the hook posts to the first, and the
// guest, Ann and Bob each hold their stream on another node.
test("the same on three Caddy nodes with transport nats", { timeout: 60_000 }, (t) => migration(t, { nodes: 3 }));

async function migration(t, { nodes }) {
	const [port, adminPort] = await freePorts(2);
	const proxy = await startProxy(adminPort); // the hook's way to the first node's admin API; cut() takes it away
	const pb = new PocketBaseServer();
	const caddies = Array.from({ length: nodes }, () => new CaddyServer());
	const caddy = caddies[0];
	const natsURL = nodes > 1 ? await startNats(t) : "";
	const sdkClients = [];
	t.after(async () => {
		for (const c of sdkClients) {
			c.realtime.onDisconnect = undefined;
			c.realtime.subscriptions = {};
			try {
				c.realtime.disconnect();
			} catch {}
		}
		for (const c of caddies) await c.stop();
		await pb.stop();
		await proxy.close();
	});

	await pb.start({
		hooksDir: HOOKS_DIR,
		env: {
			REALTIME_ADMIN_URL: proxy.url,
			REALTIME_TIMEOUT: "1",
			REALTIME_MAX_EVENT_BYTES: String(MAX_EVENT_BYTES),
			REALTIME_SKIP_COLLECTIONS: "_authOrigins",
		},
	});
	await pb.rest("PATCH", "/api/settings", { logs: { maxDays: 1 }, batch: { enabled: true, maxRequests: 50 } }); // logs: the hook's warnings are asserted below

	// Schema, through PocketBase's REST API as a superuser.
	const users = await pb.rest("GET", "/api/collections/users");
	await pb.rest("POST", "/api/collections", {
		name: "posts",
		type: "base",
		fields: [
			{ name: "title", type: "text" },
			{ name: "status", type: "text" },
			{ name: "author", type: "relation", collectionId: users.id, maxSelect: 1 },
			{ name: "secret", type: "text", hidden: true },
			{ name: "body", type: "editor" },
		],
		listRule: OWNER_RULE,
		viewRule: OWNER_RULE,
		createRule: "@request.auth.id != ''",
		updateRule: "author = @request.auth.id",
		deleteRule: "author = @request.auth.id",
	});
	await pb.rest("POST", "/api/collections", { name: "sentinel", type: "base", fields: [{ name: "n", type: "number" }], listRule: "", viewRule: "" });

	// Our Caddy, before any record changes (the hook would queue them and deliver them late), with the realtime block the import command prints for this PocketBase.
	const { stdout: block } = await execFileP(CADDY_BIN, ["realtime", "import-pocketbase", "--url", pb.url], {
		env: { ...process.env, POCKETBASE_TOKEN: pb.superToken },
	});
	assert.match(block, new RegExp(`url ${pb.url}/api/collections/users/auth-refresh`));
	// The site block of README's "Moving PocketBase's realtime to Caddy", with this test's addresses,
	// importing the block; the admin also answers the hook's Host, the proxy's address.
	const site = readmeSiteBlock()
		.replace("api.example.com", `http://127.0.0.1:${port}`)
		.replaceAll("127.0.0.1:8090", `127.0.0.1:${pb.port}`);
	// On a cluster each node's block gets the transport line (README: "Several nodes on NATS JetStream").
	const nodeBlock = natsURL ? block.replace(/^realtime \/api\/realtime \{$/m, `$&\n\ttransport nats ${natsURL}`) : block;
	assert.ok(!natsURL || nodeBlock.includes("transport nats"), "the transport line went into the imported block");
	for (const [i, node] of caddies.entries()) {
		const ports = i === 0 ? [port, adminPort] : await freePorts(2);
		await node.start(
			() => {
				fs.writeFileSync(path.join(node.tmp, "realtime.caddy"), nodeBlock);
				return `{
	admin 127.0.0.1:${ports[1]} {
		origins 127.0.0.1:${ports[1]} 127.0.0.1:${proxy.port}
	}
	auto_https off
	persist_config off
}
${site.replace(`http://127.0.0.1:${port}`, `http://127.0.0.1:${ports[0]}`)}`;
			},
			{ ports },
		);
	}

	// The rest of the API goes through the site to PocketBase, so clients need only its URL.
	const health = await fetch(`${caddy.url}/api/health`);
	assert.equal(health.status, 200, "PocketBase's REST API through the Caddy site");
	assert.match(await health.text(), /API is healthy/);

	// Users sign up and sign in through PocketBase.
	const signUp = async (name) => {
		const email = `${name}@example.com`;
		await pb.rest("POST", "/api/collections/users/records", { email, name, password: USER_PASSWORD, passwordConfirm: USER_PASSWORD }, { token: null });
		const auth = await pb.rest("POST", "/api/collections/users/auth-with-password", { identity: email, password: USER_PASSWORD }, { token: null });
		return { id: auth.record.id, token: auth.token, record: auth.record };
	};
	const ann = await signUp("ann");
	const bob = await signUp("bob");
	const as = (who) => ({ token: who.token });
	const seed = await pb.rest("POST", "/api/collections/posts/records", { title: "seed", status: "published", author: ann.id }, as(ann));

	// The same SDK code on both servers, for a guest, Ann and Bob.
	const who = { guest: null, ann, bob };
	const got = { pocketbase: {}, caddy: {} };
	for (const server of ["pocketbase", "caddy"]) {
		for (const [i, [name, auth]] of Object.entries(who).entries()) {
			const c = new PocketBase(server === "pocketbase" ? pb.url : caddies[i % nodes].url);
			c.autoCancellation(false);
			sdkClients.push(c);
			if (auth) c.authStore.save(auth.token, auth.record);
			const events = (got[server][name] = []);
			const on = (topic) => (e) => events.push({ topic, action: e.action, record: e.record, line: `${topic} ${e.action} ${canon(e.record)}` });
			await c.collection("posts").subscribe("*", on("posts/*"));
			await c.collection("posts").subscribe(seed.id, on("posts/SEED"));
			await c.collection("posts").subscribe("*", on("posts/* title~b"), { filter: "title ~ 'b'" });
			await c.collection("users").subscribe("*", on("users/*"));
			await c.collection("sentinel").subscribe("*", on("sentinel/*"));
		}
	}

	// A phase ends when every client of the given servers has seen a sentinel, created twice:
	// PocketBase sends each message from its own goroutine, so one could overtake earlier ones.
	let sentinel = 0;
	const settle = async (servers = ["pocketbase", "caddy"]) => {
		for (let i = 0; i < 2; i++) {
			const n = ++sentinel;
			await pb.rest("POST", "/api/collections/sentinel/records", { n });
			await waitFor(
				() => servers.every((s) => Object.values(got[s]).every((evs) => evs.some((e) => e.topic === "sentinel/*" && e.record.n === n))),
				15_000,
				() => `sentinel ${n} on ${servers.join(" and ")}: ` + JSON.stringify(Object.fromEntries(servers.map((s) => [s, Object.fromEntries(Object.entries(got[s]).map(([k, v]) => [k, v.length]))]))),
			);
		}
	};
	const compare = (phase, { exclude = () => false } = {}) => {
		for (const name of Object.keys(who)) {
			const theirs = got.pocketbase[name].filter((e) => !exclude(e)).map((e) => e.line).sort();
			const ours = got.caddy[name].filter((e) => !exclude(e)).map((e) => e.line).sort();
			assert.deepEqual(ours, theirs, `${phase}: ${name} on our Caddy (actual) vs PocketBase's realtime (expected)`);
		}
	};

	t.diagnostic("clients subscribed");
	if (nodes > 1) {
		const stats = await caddy.admin("GET", "/realtime/stats");
		assert.equal(Object.keys(stats.json?.nodes ?? {}).length, nodes, `one stream, every node: ${stats.text}`);
	}
	// Phase 1: record changes of every kind, by their owners and by a superuser.
	const p1 = await pb.rest("POST", "/api/collections/posts/records", { title: "hello", status: "published", author: ann.id, secret: "s1" }, as(ann));
	const d1 = await pb.rest("POST", "/api/collections/posts/records", { title: "ann's draft", status: "draft", author: ann.id }, as(ann));
	const d2 = await pb.rest("POST", "/api/collections/posts/records", { title: "bob's draft", status: "draft", author: bob.id }, as(bob));
	await pb.rest("PATCH", `/api/collections/posts/records/${d1.id}`, { status: "published" }, as(ann));
	await pb.rest("PATCH", `/api/collections/posts/records/${p1.id}`, { status: "draft" }, as(ann));
	await pb.rest("PATCH", `/api/collections/posts/records/${seed.id}`, { title: "seed, bumped" }, as(ann));
	await pb.rest("PATCH", `/api/collections/users/records/${ann.id}`, { name: "Ann B." }, as(ann));
	await pb.rest("POST", "/api/collections/users/records", { email: "carol@example.com", password: USER_PASSWORD, passwordConfirm: USER_PASSWORD }); // superuser
	await pb.rest("PATCH", `/api/collections/posts/records/${d2.id}`, { title: "bob's draft, by a superuser", secret: "s2" });
	// Several records in one transaction: the hook sends them together after the commit.
	await pb.rest(
		"POST",
		"/api/batch",
		{
			requests: [
				{ method: "POST", url: "/api/collections/posts/records", body: { title: "batch b1", status: "published", author: bob.id } },
				{ method: "POST", url: "/api/collections/posts/records", body: { title: "batch b2", status: "draft", author: bob.id } },
				{ method: "DELETE", url: `/api/collections/posts/records/${d1.id}` },
			],
		},
		{ token: pb.superToken },
	);
	await pb.rest("DELETE", `/api/collections/posts/records/${d2.id}`, undefined, as(bob));
	// Larger than REALTIME_MAX_EVENT_BYTES: PocketBase saves it, the hook refuses to forward it.
	const big = await pb.rest("POST", "/api/collections/posts/records", { title: "big", status: "published", author: ann.id, body: "x".repeat(MAX_EVENT_BYTES) }, as(ann));
	await settle();

	t.diagnostic("phase 1 settled");
	const isBig = (e) => e.record.id === big.id;
	compare("phase 1", { exclude: isBig });
	for (const name of Object.keys(who)) {
		assert.ok(got.pocketbase[name].some(isBig), `${name} got the big post from PocketBase`);
		assert.ok(!got.caddy[name].some(isBig), `${name} got the big post from our Caddy, over REALTIME_MAX_EVENT_BYTES`);
	}
	// Not vacuous: the rules and the hidden field made a difference between clients.
	const lines = (server, name) => got[server][name].map((e) => e.line).join("\n");
	assert.match(lines("caddy", "ann"), /ann's draft/);
	assert.doesNotMatch(lines("caddy", "guest"), /bob's draft|batch b2/);
	assert.match(lines("caddy", "bob"), /batch b2/);
	assert.doesNotMatch(lines("caddy", "bob") + lines("caddy", "ann"), /"secret"/);
	assert.ok(got.caddy.ann.some((e) => e.topic === "users/*" && e.record.name === "Ann B." && e.record.email === "ann@example.com"), "ann sees her own user record with its email");
	assert.ok(got.caddy.guest.length >= 10, `the guest got ${got.caddy.guest.length} events`);

	// Phase 2: Caddy unreachable. PocketBase's requests still succeed, its own clients get the
	// events, ours get them once Caddy is back (the first attempt, held by the proxy, may reach
	// Caddy after the hook gave up on it: the retry carries the same event id and is skipped).
	proxy.cut();
	const down1 = await pb.rest("POST", "/api/collections/posts/records", { title: "while down 1", status: "published", author: ann.id }, as(ann));
	const down2 = await pb.rest("PATCH", `/api/collections/posts/records/${down1.id}`, { title: "while down 2" }, as(ann));
	assert.equal(down2.title, "while down 2");
	await settle(["pocketbase"]);
	assert.ok(!got.caddy.guest.some((e) => e.record.id === down1.id), "our Caddy got an event while unreachable");
	t.diagnostic("phase 2: pocketbase settled");
	proxy.release();
	await delay(1200); // past the hook's first retry delay (1s), so the next change carries the queue
	await settle();
	compare("phase 2", { exclude: isBig });
	assert.deepEqual(
		got.caddy.guest.filter((e) => e.record.id === down1.id && e.topic === "posts/*").map((e) => `${e.action} ${e.record.title}`),
		["create while down 1", "update while down 2"],
		"our guest got the queued events once, in order",
	);

	// The hook logged the outage and the oversized record (PocketBase writes its logs in batches).
	const logs = async () => (await pb.rest("GET", `/api/logs?perPage=200&filter=${encodeURIComponent("message ~ 'realtime:'")}`)).items;
	let seen = [];
	await waitFor(
		async () => {
			seen = await logs();
			const msgs = seen.map((l) => l.message);
			return ["realtime: cannot publish to Caddy, events queued for retry", "realtime: Caddy reachable again", "realtime: events dropped"].every((m) => msgs.includes(m));
		},
		15_000,
		() => `hook log lines: ${JSON.stringify(seen)}`,
		250,
	);
	const dropped = seen.find((l) => l.message === "realtime: events dropped");
	assert.equal(dropped.data.count, 1);
	assert.match(dropped.data.reason, /over REALTIME_MAX_EVENT_BYTES/);
	assert.equal(dropped.data.event, `create posts/${big.id}`);

	// A new password changes Bob's tokenKey: PocketBase signs his realtime client out, so a draft
	// of his written afterwards by a superuser reaches nobody on PocketBase.
	await t.test(
		"a new password signs the user's realtime client out, as on PocketBase",
		async () => {
			await pb.rest("PATCH", `/api/collections/users/records/${bob.id}`, { oldPassword: USER_PASSWORD, password: USER_PASSWORD + "2", passwordConfirm: USER_PASSWORD + "2" }, as(bob));
			const late = await pb.rest("POST", "/api/collections/posts/records", { title: "bob's draft after a new password", status: "draft", author: bob.id });
			await settle();
			// The one known difference: the event that carries Bob's new tokenKey is the first
			// tokenKey Caddy sees for him (auth-refresh hides it), so it cannot tell a new password
			// from a profile edit; it judges that event as a profile edit (Bob gets his own record,
			// without secrets), then looks his token up again and signs him out. PocketBase signs
			// him out first. Nothing published afterwards reaches him (the draft below).
			const ownRecordUpdate = (e) => e.line.startsWith("users/") && e.record.id === bob.id;
			compare("after bob's new password", { exclude: (e) => isBig(e) || ownRecordUpdate(e) });
			assert.ok(!got.caddy.bob.some((e) => e.record.id === late.id), "bob got his draft after his tokens were revoked");
		},
	);
}

test("with Caddy down for good, PocketBase's requests succeed and the hook drops events with counts", { timeout: 30_000 }, async (t) => {
	const [closedPort] = await freePorts(1); // nothing listens: every post is refused at once
	const pb = new PocketBaseServer();
	t.after(() => pb.stop());
	await pb.start({
		hooksDir: HOOKS_DIR,
		env: {
			REALTIME_ADMIN_URL: `http://127.0.0.1:${closedPort}`,
			REALTIME_QUEUE_MAX: "2",
			REALTIME_RETRY_FOR: "1",
			REALTIME_SKIP_COLLECTIONS: "_authOrigins",
		},
	});
	await pb.rest("PATCH", "/api/settings", { logs: { maxDays: 1 } });
	await pb.rest("POST", "/api/collections", { name: "notes", type: "base", fields: [{ name: "n", type: "number" }] });
	// Three changes while the endpoint is down: the queue keeps two, the oldest (1) goes.
	for (let n = 1; n <= 3; n++) await pb.rest("POST", "/api/collections/notes/records", { n });
	// Past REALTIME_RETRY_FOR, a fourth change pushes out 2, then finds 3 too old to send.
	await delay(1500);
	await pb.rest("POST", "/api/collections/notes/records", { n: 4 });

	let dropped = [];
	await waitFor(
		async () => {
			const { items } = await pb.rest("GET", `/api/logs?perPage=50&sort=created&filter=${encodeURIComponent("message = 'realtime: events dropped'")}`);
			dropped = items.map((l) => ({ count: l.data.count, total: l.data.dropped_total, reason: l.data.reason })).sort((a, b) => a.total - b.total);
			return dropped.length >= 3;
		},
		15_000,
		() => `dropped lines: ${JSON.stringify(dropped)}`,
		250,
	);
	// The fourth change is dropped in its turn once it is older than REALTIME_RETRY_FOR (1 s): on a
	// loaded machine the logs may already show it when they are read.
	const want = [
		[1, 1],
		[1, 2],
		[1, 3],
	];
	if (dropped.length > 3) want.push([1, 4]);
	assert.deepEqual(
		dropped.map(({ count, total }) => [count, total]),
		want,
	);
	assert.match(dropped[0].reason, /REALTIME_QUEUE_MAX/);
	assert.match(dropped[1].reason, /REALTIME_QUEUE_MAX/);
	assert.match(dropped[2].reason, /REALTIME_RETRY_FOR/);
	if (dropped.length > 3) assert.match(dropped[3].reason, /REALTIME_RETRY_FOR/);
	const notes = await pb.rest("GET", "/api/collections/notes/records?perPage=10");
	assert.equal(notes.totalItems, 4, "every create succeeded");
});
