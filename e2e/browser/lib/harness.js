// Starts our Caddy (the realtime module + file_server on the demo page) on free ports and a headless
// Debian Chromium driven by playwright-core. One server and one browser per test file.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BROWSER_DIR = path.resolve(HERE, "..");
export const REPO_DIR = path.resolve(BROWSER_DIR, "../..");

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-background-networking",
	"--disable-component-update",
	"--no-first-run",
	"--disable-sync",
	"--disable-quic",
];

/** Path to our Caddy: $CADDY_BIN, or built from the repo into e2e/browser/.bin/caddy (once per process). */
let built;
export function caddyBinary() {
	if (process.env.CADDY_BIN) return process.env.CADDY_BIN;
	if (!built) {
		built = path.join(BROWSER_DIR, ".bin", "caddy");
		fs.mkdirSync(path.dirname(built), { recursive: true });
		execFileSync("go", ["build", "-o", built, "./cmd/caddy"], { cwd: REPO_DIR, stdio: ["ignore", "inherit", "inherit"] });
	}
	return built;
}

/** A free TCP port on 127.0.0.1 (the OS picks it; tiny race until Caddy binds it). */
function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.on("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address();
			srv.close(() => resolve(port));
		});
	});
}

/**
 * A request with node:http (node:https for https URLs, certificate not checked: Caddy's internal
 * issuer). Not fetch(): Node's fetch sends `Sec-Fetch-Mode: cors`, and Caddy's admin
 * endpoint answers any request carrying a Sec-Fetch-Mode header with an Origin check (403 "client is
 * not allowed to access from origin ''").
 */
export function request(method, url, body) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? undefined : JSON.stringify(body);
		const mod = url.startsWith("https:") ? https : http;
		const opts = { method, headers: data === undefined ? {} : { "Content-Type": "application/json" }, rejectUnauthorized: false };
		const req = mod.request(url, opts, (res) => {
			const chunks = [];
			res.on("data", (c) => chunks.push(c));
			res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString("utf8") }));
		});
		req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${url}: timed out`)));
		req.on("error", reject);
		req.end(data);
	});
}

/** Polls fn until it returns a truthy value, or throws after timeoutMs saying what it waited for. */
export async function waitFor(fn, timeoutMs, what) {
	const deadline = Date.now() + timeoutMs;
	let last;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v;
		} catch (err) {
			last = err;
		}
		if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
		await delay(50);
	}
}

export async function startCaddy() {
	const bin = caddyBinary();
	const sitePort = await freePort();
	let adminPort = await freePort();
	while (adminPort === sitePort) adminPort = await freePort();
	let tlsPort = await freePort();
	while (tlsPort === sitePort || tlsPort === adminPort) tlsPort = await freePort();

	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "realtime-browser-"));
	// The same site over plain HTTP and over HTTPS (Caddy's internal issuer), where Chromium speaks HTTP/2.
	const handlers = `realtime /api/realtime {
		heartbeat 1s
	}
	root * demo
	file_server`;
	const caddyfile = `{
	admin 127.0.0.1:${adminPort}
	auto_https disable_redirects
	skip_install_trust
	persist_config off
}

http://127.0.0.1:${sitePort} {
	${handlers}
}

https://127.0.0.1:${tlsPort} {
	tls internal
	${handlers}
}
`;
	fs.writeFileSync(path.join(dir, "Caddyfile"), caddyfile);
	const logPath = path.join(dir, "caddy.log");
	const log = fs.openSync(logPath, "a");
	// Caddy runs in the repo, so `root * demo` is the repo's demo/ (as in Caddyfile.example).
	const proc = spawn(bin, ["run", "--config", path.join(dir, "Caddyfile"), "--adapter", "caddyfile"], {
		cwd: REPO_DIR,
		env: { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, "data"), XDG_CONFIG_HOME: path.join(dir, "config") },
		stdio: ["ignore", log, log],
	});
	let exited = null;
	proc.on("exit", (code, signal) => (exited = { code, signal }));

	const site = `http://127.0.0.1:${sitePort}`;
	const tlsSite = `https://127.0.0.1:${tlsPort}`;
	const admin = `http://127.0.0.1:${adminPort}`;
	const logTail = (n = 30) => fs.readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-n).join("\n");

	await waitFor(async () => {
		if (exited) throw new Error(`caddy exited early (${JSON.stringify(exited)}):\n${logTail()}`);
		const [a, s, t] = await Promise.all([request("GET", `${admin}/realtime/clients`), request("GET", `${site}/`), request("GET", `${tlsSite}/`)]);
		return a.status === 200 && s.status === 200 && t.status === 200; // the internal issuer signs in the background
	}, 30_000, `caddy to serve ${site}, ${tlsSite} and ${admin}`).catch((err) => {
		proc.kill("SIGKILL");
		const message = `${err.message}\n--- caddy log ---\n${logTail()}`;
		fs.closeSync(log);
		if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
		throw new Error(message);
	});

	async function adminJSON(method, urlPath, body) {
		const res = await request(method, admin + urlPath, body);
		if (res.status !== 200) throw new Error(`${method} ${urlPath}: ${res.status} ${res.text}`);
		return res.text ? JSON.parse(res.text) : null;
	}

	return {
		site,
		/** The same site over HTTPS (tls internal: the browser must ignore certificate errors). */
		tlsSite,
		tlsPort,
		admin,
		adminPort,
		dir,
		logTail,
		/** POST /realtime/events: one event or an array. */
		publish: (events) => adminJSON("POST", "/realtime/events", events),
		/** POST /realtime/messages */
		message: (name, data) => adminJSON("POST", "/realtime/messages", { name, data }),
		clients: async () => (await adminJSON("GET", "/realtime/clients?limit=1000")).clients,
		client: (id) => adminJSON("GET", `/realtime/clients/${encodeURIComponent(id)}`),
		disconnect: (id) => adminJSON("DELETE", `/realtime/clients/${encodeURIComponent(id)}`),
		async stop() {
			if (exited) return;
			const done = new Promise((r) => proc.once("exit", r));
			proc.kill("SIGTERM");
			const killed = await Promise.race([done.then(() => false), delay(10_000).then(() => true)]);
			if (killed) {
				proc.kill("SIGKILL");
				await done;
			}
			fs.closeSync(log);
			if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}

export async function startBrowser() {
	if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run e2e/browser/run.sh (it installs Debian's chromium)`);
	// launch() refuses a --user-data-dir argument; it always starts Chromium with a fresh temporary
	// profile of its own (--user-data-dir=$TMPDIR/playwright_chromiumdev_profile-*) and deletes it on close.
	return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 60_000 });
}
