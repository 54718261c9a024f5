// The server under test, chosen by E2E_TARGET=caddy|pocketbase|cluster (default caddy).
// Each target starts its own server on free 127.0.0.1 ports with a fresh temp dir, and offers the
// same small API to the tests: an SDK client factory, login, publish, and (ours only) admin calls.
import "./setup.js";
import { spawn, execFile } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import PocketBase from "pocketbase";
import { EventSource } from "eventsource";
import { AuthServer } from "./authserver.js";
import { waitFor, freePorts, randomId, delay, WaitAborted } from "./util.js";

const execFileP = promisify(execFile);
const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const TARGET = (process.env.E2E_TARGET || "caddy").toLowerCase();
if (!["caddy", "pocketbase", "cluster"].includes(TARGET)) {
	throw new Error(`E2E_TARGET must be caddy, pocketbase or cluster, got ${JSON.stringify(TARGET)}`);
}

/** What each target can do; tests skip on a missing feature with the reason given here. */
const FEATURES = {
	caddy: {
		orderedDelivery: true, // DESIGN §2: events reach each client in publish order
		adminPublish: true,
		customMessages: true,
		wildcard: true,
		clientList: true,
		adminDisconnect: true,
		resume: true,
	},
	cluster: {
		orderedDelivery: true,
		adminPublish: true,
		customMessages: true,
		wildcard: true,
		clientList: true,
		adminDisconnect: true,
		resume: true,
	},
	pocketbase: {
		orderedDelivery: false, // one goroutine per message: not guaranteed (spec §1), seen ~1 swap per 300
		adminPublish: false,
		customMessages: false,
		wildcard: false,
		clientList: false,
		adminDisconnect: false,
		resume: false,
	},
};

const SKIP_REASONS = {
	customMessages: "PocketBase has no API to send a custom realtime message (only Go/JSVM hooks); our admin POST /realtime/messages is ours only",
	wildcard: "the bare `*` topic is our deliberate difference: PocketBase matches nothing for it",
	clientList: "listing realtime clients is our admin API (GET /realtime/clients); PocketBase has none",
	adminDisconnect: "server-side disconnect of one client is our admin API (DELETE /realtime/clients/{id})",
	resume: "PocketBase ignores Last-Event-ID: every reconnect is a new client and events of the gap are lost (spec: No replay)",
};

export const features = FEATURES[TARGET];

/** For node:test's `skip` option: false when the target has every feature, else the reason. */
export function skipUnless(...names) {
	for (const name of names) {
		if (!features[name]) return `${TARGET}: ${SKIP_REASONS[name] ?? name + " not supported"}`;
	}
	return false;
}

export async function startTarget() {
	const t = TARGET === "pocketbase" ? new PocketBaseTarget() : TARGET === "cluster" ? new ClusterTarget() : new CaddyTarget();
	try {
		await t.start();
	} catch (err) {
		const tail = t.logTail();
		await t.stop().catch(() => {});
		err.message += tail ? `\n--- ${t.name} log tail ---\n${tail}` : "";
		throw err;
	}
	return t;
}

// ---------------------------------------------------------------------------------------------

class BaseTarget {
	constructor(name) {
		this.name = name;
		this.clients = new Set();
		this.rawSources = new Set();
		this.proc = null;
		this.tmp = null;
		this.logFile = null;
	}

	/** The official SDK, pointed at the target. Closed by closeClients()/stop(). */
	client() {
		const pb = new PocketBase(this.url);
		pb.autoCancellation(false);
		this.clients.add(pb);
		return pb;
	}

	/** A raw EventSource on /api/realtime (of `url`, e.g. a proxy's); resolves once PB_CONNECT arrived. */
	async connectRaw(timeoutMs = 10_000, { url = this.url } = {}) {
		const es = new EventSource(`${url}/api/realtime`);
		this.rawSources.add(es);
		const events = [];
		const connect = await new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error("raw EventSource: no PB_CONNECT in time")), timeoutMs);
			es.addEventListener("PB_CONNECT", (e) => {
				clearTimeout(timer);
				resolve({ lastEventId: e.lastEventId, data: e.data });
			});
			es.onerror = (e) => {
				if (es.readyState === EventSource.CLOSED) {
					clearTimeout(timer);
					reject(new Error(`raw EventSource failed: ${e?.message ?? e?.code ?? "error"}`));
				}
			};
		});
		return {
			es,
			clientId: connect.lastEventId,
			connectData: connect.data,
			events,
			listen: (name) => es.addEventListener(name, (e) => events.push({ name, data: e.data, lastEventId: e.lastEventId })),
			close: () => {
				es.close();
				this.rawSources.delete(es);
			},
		};
	}

	/** Raw POST /api/realtime, as the SDK would send it. */
	async postSubscriptions(clientId, subscriptions, { token } = {}) {
		const headers = { "Content-Type": "application/json" };
		if (token) headers.Authorization = token;
		const res = await fetch(`${this.url}/api/realtime`, {
			method: "POST",
			headers,
			body: JSON.stringify({ clientId, subscriptions }),
		});
		const text = await res.text();
		let json;
		try {
			json = text ? JSON.parse(text) : undefined;
		} catch {}
		return { status: res.status, text, json };
	}

	async closeClients() {
		for (const pb of this.clients) {
			const rt = pb.realtime;
			rt.onDisconnect = undefined;
			rt.subscriptions = {};
			try {
				rt.disconnect(); // closes the EventSource and clears reconnect timers
			} catch {}
		}
		this.clients.clear();
		for (const es of this.rawSources) es.close();
		this.rawSources.clear();
	}

	logTail(lines = 40) {
		if (!this.logFile) return "";
		try {
			return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
		} catch {
			return "";
		}
	}

	async makeTmp(prefix) {
		const base = process.env.E2E_TMPDIR || os.tmpdir();
		await fsp.mkdir(base, { recursive: true });
		this.tmp = await fsp.mkdtemp(path.join(base, prefix));
		this.logFile = path.join(this.tmp, `${this.name}.log`);
	}

	spawnServer(bin, args, env = {}) {
		const fd = fs.openSync(this.logFile, "a");
		const proc = spawn(bin, args, {
			cwd: this.tmp,
			env: { ...process.env, ...env },
			stdio: ["ignore", fd, fd],
		});
		fs.closeSync(fd);
		proc.exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
		proc.once("error", (err) => fs.appendFileSync(this.logFile, `spawn error: ${err.message}\n`));
		return proc;
	}

	async stopProcess(graceMs = 5000) {
		const proc = this.proc;
		this.proc = null;
		if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
		proc.kill("SIGTERM");
		const done = await Promise.race([proc.exited, delay(graceMs).then(() => null)]);
		if (!done) {
			fs.appendFileSync(this.logFile, `e2e: ${this.name} did not exit ${graceMs} ms after SIGTERM; killing\n`);
			this.stopTimedOut = true;
			proc.kill("SIGKILL");
			await proc.exited;
		}
	}

	async stop() {
		await this.closeClients();
		await this.stopProcess();
		if (this.tmp && !process.env.E2E_KEEP_TMP) {
			await fsp.rm(this.tmp, { recursive: true, force: true }).catch(() => {});
		}
	}

	/** Polls url until check(res) is true, failing fast when the server process died. */
	async waitReady(url, init, check, timeoutMs = 30_000) {
		await waitFor(
			async () => {
				if (this.proc && (this.proc.exitCode !== null || this.proc.signalCode !== null)) {
					throw new WaitAborted(`${this.name} exited early (code ${this.proc.exitCode}, signal ${this.proc.signalCode})`);
				}
				const res = await fetch(url, init);
				return check(res);
			},
			timeoutMs,
			`${this.name} readiness at ${url}`,
			100,
		);
	}

	// Convenience wrappers over publish(); each returns the record as it now stands.
	create(collection, fields) {
		return this.publish(collection, "create", fields);
	}
	update(collection, record, changes) {
		return this.publish(collection, "update", { ...record, ...changes });
	}
	remove(collection, record) {
		return this.publish(collection, "delete", record);
	}
}

// ---------------------------------------------------------------------------------------------
// Ours: e2e/.bin/caddy with the realtime module, events published through Caddy's admin API.

export function caddyfile({ port, adminPort, authPort }) {
	return `{
	admin 127.0.0.1:${adminPort}
	auto_https off
	persist_config off
}
http://127.0.0.1:${port} {
	realtime /api/realtime {
		heartbeat 1s
		auth {
			url http://127.0.0.1:${authPort}/auth
			record_path record
		}
		superusers "@request.auth.collectionName = '_superusers'"
		collection posts {
			list_rule ""
			view_rule ""
		}
		collection notes {
			list_rule "@request.auth.id = author"
			view_rule "@request.auth.id = author"
		}
	}
}
`;
}

/**
 * The contract Caddyfile above, or E2E_CADDYFILE: a template file with @PORT@, @ADMINPORT@ and
 * @AUTHPORT@ placeholders (to try a variant, e.g. while a subdirective is not implemented yet).
 */
async function caddyfileText(ports) {
	const template = process.env.E2E_CADDYFILE;
	if (!template) return caddyfile(ports);
	return (await fsp.readFile(template, "utf8"))
		.replaceAll("@PORT@", String(ports.port))
		.replaceAll("@ADMINPORT@", String(ports.adminPort))
		.replaceAll("@AUTHPORT@", String(ports.authPort));
}

/**
 * Normalizes GET /realtime/clients to [{id, subscriptions:[...]}, ...].
 * Shape (seen live): {"total":N,"offset":0,"limit":1000,"clients":[{"id","ip","connected_at",
 * "subscriptions":[...],"auth","pending_bytes","delivered"}]}; adapt here only.
 */
export function parseClientList(json) {
	const list = Array.isArray(json) ? json : (json?.clients ?? json?.items ?? []);
	return list.map((c) => ({ ...c, id: c.id ?? c.clientId, subscriptions: c.subscriptions ?? c.topics ?? [] }));
}

class CaddyTarget extends BaseTarget {
	constructor(name = "caddy") {
		super(name);
		this.records = new Map(); // "collection/id" -> last published state
	}

	async start() {
		await this.makeTmp("e2e-caddy-");
		const bin = process.env.E2E_CADDY_BIN || path.join(E2E_DIR, ".bin", "caddy");
		if (!fs.existsSync(bin)) throw new Error(`caddy binary not found at ${bin}: run e2e/scripts/build-caddy.sh`);
		const [port, adminPort, authPort] = await freePorts(3);
		Object.assign(this, { port, adminPort, authPort });
		this.url = `http://127.0.0.1:${port}`;
		this.adminUrl = `http://127.0.0.1:${adminPort}`;

		this.auth = new AuthServer();
		await this.auth.listen(authPort);

		const config = path.join(this.tmp, "Caddyfile");
		await fsp.writeFile(config, await caddyfileText({ port, adminPort, authPort }));
		this.proc = this.spawnServer(bin, ["run", "--config", config, "--adapter", "caddyfile"], {
			HOME: this.tmp,
			XDG_CONFIG_HOME: path.join(this.tmp, "config"),
			XDG_DATA_HOME: path.join(this.tmp, "data"),
		});
		await this.waitReady(`${this.adminUrl}/realtime/stats`, { headers: this.adminHeaders() }, async (res) => {
			if (res.status !== 200) return false;
			await res.json(); // must be JSON
			return true;
		});
	}

	async stop() {
		await super.stop();
		await this.auth?.close();
	}

	async login(name) {
		return this.auth.login(name);
	}

	/**
	 * Node's fetch always sends `Sec-Fetch-Mode: cors`; Caddy's admin endpoint then treats the call as
	 * a browser's and requires an allowed Origin (403 "client is not allowed to access from origin ''").
	 */
	adminHeaders(extra = {}) {
		return { Origin: this.adminUrl, ...extra };
	}

	/** Any admin API call; returns {status, json, text}. */
	async admin(method, pathname, body) {
		const res = await fetch(`${this.adminUrl}${pathname}`, {
			method,
			headers: this.adminHeaders(body === undefined ? {} : { "Content-Type": "application/json" }),
			body: body === undefined ? undefined : JSON.stringify(body),
		});
		const text = await res.text();
		let json;
		try {
			json = text ? JSON.parse(text) : undefined;
		} catch {}
		return { status: res.status, json, text };
	}

	toEvent(collection, action, record) {
		const full = { ...record, collectionName: collection };
		if (!full.id) full.id = randomId();
		return { action, record: full };
	}

	async postEvents(events) {
		const res = await this.admin("POST", "/realtime/events", events.length === 1 ? events[0] : events);
		if (res.status !== 200 || res.json?.published !== events.length) {
			throw new Error(`POST /realtime/events (${events.length} events): expected 200 {"published":${events.length}}, got ${res.status} ${res.text}`);
		}
		for (const e of events) {
			const key = `${e.record.collectionName}/${e.record.id}`;
			if (e.action === "delete") this.records.delete(key);
			else this.records.set(key, e.record);
		}
		return events.map((e) => e.record);
	}

	async publish(collection, action, record) {
		const [r] = await this.postEvents([this.toEvent(collection, action, record)]);
		return r;
	}

	/** Many creates, in order, in a few admin POSTs of `chunk` events each. */
	async createMany(collection, list, { chunk = 100 } = {}) {
		const out = [];
		for (let i = 0; i < list.length; i += chunk) {
			const events = list.slice(i, i + chunk).map((fields) => this.toEvent(collection, "create", fields));
			out.push(...(await this.postEvents(events)));
		}
		return out;
	}

	/** Every client, paging GET /realtime/clients?limit=&offset= (limit is at most 1000). */
	async listClients() {
		const all = [];
		for (let offset = 0; ; ) {
			const res = await this.admin("GET", `/realtime/clients?limit=1000&offset=${offset}`);
			if (res.status !== 200) throw new Error(`GET /realtime/clients: ${res.status} ${res.text}`);
			const page = parseClientList(res.json);
			all.push(...page);
			offset += page.length;
			const total = res.json?.total;
			if (page.length === 0 || (typeof total === "number" ? offset >= total : page.length < 1000)) break;
		}
		return all;
	}

	async hasClient(clientId) {
		return (await this.listClients()).some((c) => c.id === clientId);
	}

	async disconnectClient(clientId) {
		const res = await this.admin("DELETE", `/realtime/clients/${encodeURIComponent(clientId)}`);
		if (res.status < 200 || res.status > 299) throw new Error(`DELETE /realtime/clients/${clientId}: ${res.status} ${res.text}`);
		return res;
	}

	async sendMessage(name, data, extra = {}) {
		const res = await this.admin("POST", "/realtime/messages", { name, data, ...extra });
		if (res.status !== 200) throw new Error(`POST /realtime/messages: ${res.status} ${res.text}`);
		return res.json;
	}
}

// ---------------------------------------------------------------------------------------------
// Several nodes: 3 nats-server processes (e2e/.bin/nats-server) in one JetStream cluster, 3 Caddy
// nodes with the contract Caddyfile on `transport nats`, and a 4th Caddy as the load balancer the
// SDK talks to. Events are published on the three nodes' admin APIs in turn.
// E2E_CLUSTER_LB: the balancer's policy, round_robin (default) or ip_hash. Round robin sends a
// subscription POST to any node: it needs requests about a client forwarded to the node holding
// its stream (issue 11 item 3). ip_hash sends every request of the tests (one client IP) to one node.

export function nodeCaddyfile(ports, natsUrls) {
	return caddyfile(ports).replace(
		"\t\theartbeat 1s\n",
		`\t\theartbeat 1s\n\t\ttransport nats ${natsUrls.join(" ")} {\n\t\t\treplicas 3\n\t\t}\n`,
	);
}

export function balancerCaddyfile({ port, adminPort, upstreams, policy }) {
	return `{
	admin 127.0.0.1:${adminPort}
	auto_https off
	persist_config off
}
http://127.0.0.1:${port} {
	reverse_proxy ${upstreams.join(" ")} {
		lb_policy ${policy}
		lb_try_duration 5s
		lb_try_interval 100ms
		flush_interval -1
	}
}
`;
}

class ClusterTarget extends CaddyTarget {
	constructor() {
		super("cluster");
		this.procs = [];
		this.published = 0;
	}

	async start() {
		await this.makeTmp("e2e-cluster-");
		const bin = process.env.E2E_CADDY_BIN || path.join(E2E_DIR, ".bin", "caddy");
		const natsBin = process.env.E2E_NATS_BIN || path.join(E2E_DIR, ".bin", "nats-server");
		for (const b of [bin, natsBin]) {
			if (!fs.existsSync(b)) throw new Error(`${b} not found: run e2e/scripts/build-caddy.sh`);
		}
		const policy = process.env.E2E_CLUSTER_LB || "round_robin";
		const ports = await freePorts(15);
		const nats = [0, 1, 2].map((i) => ({ port: ports[2 * i], cluster: ports[2 * i + 1] }));
		const natsUrls = nats.map((n) => `nats://127.0.0.1:${n.port}`);
		this.authPort = ports[6];
		this.auth = new AuthServer();
		await this.auth.listen(this.authPort);

		nats.forEach((n, i) => {
			const dir = path.join(this.tmp, `nats${i + 1}`);
			const routes = nats.filter((o) => o !== n).map((o) => `nats://127.0.0.1:${o.cluster}`);
			this.procs.push(this.spawnServer(natsBin, [
				"-a", "127.0.0.1", "-p", String(n.port), "-js", "-sd", dir, "--server_name", `n${i + 1}`,
				"--cluster_name", "realtime", "--cluster", `nats://127.0.0.1:${n.cluster}`, "--routes", routes.join(","),
			]));
		});

		const env = (name) => ({
			HOME: path.join(this.tmp, name),
			XDG_CONFIG_HOME: path.join(this.tmp, name, "config"),
			XDG_DATA_HOME: path.join(this.tmp, name, "data"),
		});
		this.nodes = [0, 1, 2].map((i) => ({
			name: `node${i + 1}`,
			port: ports[7 + 2 * i],
			adminPort: ports[8 + 2 * i],
			adminUrl: `http://127.0.0.1:${ports[8 + 2 * i]}`,
		}));
		for (const n of this.nodes) {
			const config = path.join(this.tmp, `${n.name}.Caddyfile`);
			await fsp.writeFile(config, nodeCaddyfile({ port: n.port, adminPort: n.adminPort, authPort: this.authPort }, natsUrls));
			this.procs.push(this.spawnServer(bin, ["run", "--config", config, "--adapter", "caddyfile"], env(n.name)));
		}
		[this.port, this.adminPort] = [ports[13], ports[14]];
		this.url = `http://127.0.0.1:${this.port}`;
		const lbConfig = path.join(this.tmp, "lb.Caddyfile");
		await fsp.writeFile(lbConfig, balancerCaddyfile({
			port: this.port,
			adminPort: this.adminPort,
			upstreams: this.nodes.map((n) => `127.0.0.1:${n.port}`),
			policy,
		}));
		this.proc = this.spawnServer(bin, ["run", "--config", lbConfig, "--adapter", "caddyfile"], env("lb"));
		this.procs.push(this.proc);

		// Ready when every node publishes through JetStream (a custom message nobody listens to).
		for (const n of this.nodes) {
			this.adminUrl = n.adminUrl;
			await this.waitReady(`${n.adminUrl}/realtime/messages`, {
				method: "POST",
				headers: this.adminHeaders({ "Content-Type": "application/json" }),
				body: JSON.stringify({ name: "warmup", data: 1 }),
			}, (res) => res.status === 200, 60_000);
		}
		await this.waitReady(`${this.url}/api/realtime`, { method: "POST", body: "{}" }, (res) => res.status < 500);
		// Sessions a node shares before its session bucket is open are not stored (resume tests
		// would then see resumed:false on another node): wait for every node's bucket.
		await waitFor(() => {
			const log = fs.readFileSync(this.logFile, "utf8");
			const count = (s) => log.split(s).length - 1;
			return count("consuming the NATS JetStream stream") >= 3 &&
				count("the session bucket is unavailable") <= count("the session bucket is open");
		}, 60_000, "every node's session bucket open");

		// Admin routes about clients go to the node holding the tests' streams: until they are
		// forwarded between nodes that is the node the balancer picks (one, with ip_hash).
		this.adminUrl = this.nodes[0].adminUrl;
		if (policy === "round_robin") {
			// One stream, its subscription POSTed once to each node: a 404 means requests about a
			// client are not forwarded to its node, and every test would fail on it.
			const probe = await this.connectRaw();
			const statuses = [];
			for (const _ of this.nodes) statuses.push((await this.postSubscriptions(probe.clientId, ["posts"])).status);
			probe.close();
			if (statuses.includes(404)) {
				throw new Error(`cluster target, round robin: a subscription POST on a node that does not hold the stream got 404 (${statuses.join(", ")}): ` +
					"it must be forwarded to the node holding it (issue 11 item 3); until then run E2E_CLUSTER_LB=ip_hash");
			}
		} else {
			const probe = await this.connectRaw();
			for (const n of this.nodes) {
				const res = await fetch(`${n.adminUrl}/realtime/clients/${probe.clientId}`, { headers: { Origin: n.adminUrl } });
				if (res.status === 200) this.adminUrl = n.adminUrl;
			}
			probe.close();
		}
	}

	/** Publishes go to the three nodes in turn: each answers after JetStream's ack. */
	async postEvents(events) {
		const node = this.nodes[this.published++ % this.nodes.length];
		const res = await fetch(`${node.adminUrl}/realtime/events`, {
			method: "POST",
			headers: { Origin: node.adminUrl, "Content-Type": "application/json" },
			body: JSON.stringify(events.length === 1 ? events[0] : events),
		});
		const text = await res.text();
		if (res.status !== 200 || JSON.parse(text)?.published !== events.length) {
			throw new Error(`POST /realtime/events on ${node.name} (${events.length} events): expected 200 {"published":${events.length}}, got ${res.status} ${text}`);
		}
		for (const e of events) {
			const key = `${e.record.collectionName}/${e.record.id}`;
			if (e.action === "delete") this.records.delete(key);
			else this.records.set(key, e.record);
		}
		return events.map((e) => e.record);
	}

	/** Every process at once, so stop() stays within its hook's timeout. */
	async stopProcess(graceMs = 5000) {
		this.stopping = true;
		const procs = this.procs;
		this.procs = [];
		this.proc = null;
		await Promise.all(procs.map(async (proc) => {
			if (proc.exitCode !== null || proc.signalCode !== null) return;
			proc.kill("SIGTERM");
			if (!(await Promise.race([proc.exited, delay(graceMs).then(() => null)]))) {
				proc.kill("SIGKILL");
				await proc.exited;
			}
		}));
	}

	/** A start that outlived its hook's timeout must not leave processes behind stop(). */
	spawnServer(bin, args, env) {
		const proc = super.spawnServer(bin, args, env);
		if (this.stopping) proc.kill("SIGKILL");
		return proc;
	}
}

// ---------------------------------------------------------------------------------------------
// The reference: a real PocketBase v0.40.4 (e2e/.peer/base), events made through its REST API.

const PB_SUPERUSER = { email: "e2e-admin@example.com", password: "E2e-Passw0rd-123456" };
const PB_USER_PASSWORD = "User-Passw0rd-123456";

class PocketBaseTarget extends BaseTarget {
	constructor() {
		super("pocketbase");
		this.users = new Map(); // name -> user record
	}

	async start() {
		await this.makeTmp("e2e-pocketbase-");
		this.bin = process.env.E2E_POCKETBASE_BIN || path.join(E2E_DIR, ".peer", "base");
		if (!fs.existsSync(this.bin)) throw new Error(`PocketBase binary not found at ${this.bin}: run e2e/scripts/build-pocketbase.sh`);
		this.dataDir = path.join(this.tmp, "pb_data");
		[this.port] = await freePorts(1);
		this.url = `http://127.0.0.1:${this.port}`;

		await execFileP(this.bin, [`--dir=${this.dataDir}`, "superuser", "upsert", PB_SUPERUSER.email, PB_SUPERUSER.password], {
			cwd: this.tmp,
		});
		await this.serve();

		const auth = await this.rest("POST", "/api/collections/_superusers/auth-with-password", {
			identity: PB_SUPERUSER.email,
			password: PB_SUPERUSER.password,
		});
		this.superToken = auth.token;

		await this.rest("POST", "/api/collections", {
			name: "posts",
			type: "base",
			listRule: "",
			viewRule: "",
			createRule: "",
			updateRule: "",
			deleteRule: "",
			fields: [
				{ name: "title", type: "text" },
				{ name: "n", type: "number" },
			],
		});
		await this.rest("POST", "/api/collections", {
			name: "notes",
			type: "base",
			listRule: "@request.auth.id = author",
			viewRule: "@request.auth.id = author",
			createRule: "",
			updateRule: "",
			deleteRule: "",
			fields: [
				{ name: "title", type: "text" },
				{ name: "n", type: "number" },
				{ name: "author", type: "relation", collectionId: "_pb_users_auth_", maxSelect: 1 },
			],
		});
		// The default `users` auth collection has password auth on; make sure of it.
		await this.rest("PATCH", "/api/collections/users", { passwordAuth: { enabled: true, identityFields: ["email"] } });
	}

	async serve() {
		this.proc = this.spawnServer(this.bin, [`--dir=${this.dataDir}`, "serve", `--http=127.0.0.1:${this.port}`]);
		await this.waitReady(`${this.url}/api/health`, {}, (res) => res.status === 200);
	}

	/** Stops and starts PocketBase on the same port and data dir: every stream is cut. */
	async restart() {
		await this.stopProcess();
		await this.serve();
	}

	async rest(method, pathname, body, { token = this.superToken } = {}) {
		const headers = {};
		if (body !== undefined) headers["Content-Type"] = "application/json";
		if (token) headers.Authorization = token;
		const res = await fetch(`${this.url}${pathname}`, {
			method,
			headers,
			body: body === undefined ? undefined : JSON.stringify(body),
		});
		const text = await res.text();
		if (res.status < 200 || res.status > 299) {
			throw new Error(`PocketBase ${method} ${pathname}: ${res.status} ${text}`);
		}
		return text ? JSON.parse(text) : undefined;
	}

	async login(name) {
		const email = `${name}@example.com`;
		if (!this.users.has(name)) {
			const rec = await this.rest("POST", "/api/collections/users/records", {
				email,
				password: PB_USER_PASSWORD,
				passwordConfirm: PB_USER_PASSWORD,
				name,
				verified: true,
			});
			this.users.set(name, rec);
		}
		const res = await this.rest(
			"POST",
			"/api/collections/users/auth-with-password",
			{ identity: email, password: PB_USER_PASSWORD },
			{ token: null },
		);
		return { token: res.token, record: res.record };
	}

	async publish(collection, action, record) {
		const { id, collectionId, collectionName, created, updated, expand, ...fields } = record;
		const base = `/api/collections/${collection}/records`;
		switch (action) {
			case "create":
				return this.rest("POST", base, id ? { id, ...fields } : fields);
			case "update":
				return this.rest("PATCH", `${base}/${id}`, fields);
			case "delete":
				await this.rest("DELETE", `${base}/${id}`);
				return record;
			default:
				throw new Error(`unknown action ${action}`);
		}
	}

	/** Sequential, awaited REST creates (PocketBase only orders what it is given in order). */
	async createMany(collection, list) {
		const out = [];
		for (const fields of list) out.push(await this.publish(collection, "create", fields));
		return out;
	}
}
