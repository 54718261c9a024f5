// The two servers of the differential suite, run side by side for the whole suite:
// a real PocketBase v0.40.4 (the oracle, which also issues every token) and our Caddy, whose
// `auth` block asks that PocketBase's auth-refresh who a token belongs to.
import "../lib/setup.js";
import { spawn, execFile } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor, freePorts, delay, WaitAborted } from "../lib/util.js";

const execFileP = promisify(execFile);
export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const SUPERUSER = { email: "diff-admin@example.com", password: "Diff-Passw0rd-123456" };
export const USER_PASSWORD = "User-Passw0rd-123456";

class Server {
	constructor(name) {
		this.name = name;
		this.proc = null;
	}

	async makeTmp() {
		const base = process.env.E2E_TMPDIR || os.tmpdir();
		await fsp.mkdir(base, { recursive: true });
		this.tmp = await fsp.mkdtemp(path.join(base, `diff-${this.name}-`));
		this.logFile = path.join(this.tmp, `${this.name}.log`);
	}

	spawn(bin, args, env = {}) {
		const fd = fs.openSync(this.logFile, "a");
		const proc = spawn(bin, args, { cwd: this.tmp, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd] });
		fs.closeSync(fd);
		proc.exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
		this.proc = proc;
	}

	async waitReady(url, init, check) {
		await waitFor(
			async () => {
				if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
					throw new WaitAborted(`${this.name} exited early (code ${this.proc.exitCode}):\n${this.logTail()}`);
				}
				return check(await fetch(url, init));
			},
			30_000,
			`${this.name} readiness at ${url}`,
			100,
		);
	}

	logTail(lines = 30) {
		try {
			return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
		} catch {
			return "";
		}
	}

	async stop() {
		const proc = this.proc;
		this.proc = null;
		if (proc && proc.exitCode === null && proc.signalCode === null) {
			proc.kill("SIGTERM");
			const done = await Promise.race([proc.exited, delay(5000).then(() => null)]);
			if (!done) {
				proc.kill("SIGKILL");
				await proc.exited;
			}
		}
		if (this.tmp && !process.env.E2E_KEEP_TMP) await fsp.rm(this.tmp, { recursive: true, force: true }).catch(() => {});
	}
}

export class HttpError extends Error {
	constructor(method, pathname, status, text) {
		super(`${method} ${pathname}: ${status} ${text}`);
		this.status = status;
		this.text = text;
		try {
			this.json = JSON.parse(text);
		} catch {}
	}
}

export class PocketBaseServer extends Server {
	constructor() {
		super("pocketbase");
	}

	/** hooksDir: PocketBase's --hooksDir; env: extra environment (the hooks read it). */
	async start({ hooksDir, env = {} } = {}) {
		await this.makeTmp();
		const bin = process.env.E2E_POCKETBASE_BIN || path.join(E2E_DIR, ".peer", "base");
		if (!fs.existsSync(bin)) throw new Error(`PocketBase binary not found at ${bin}: run e2e/scripts/build-pocketbase.sh`);
		const dataDir = path.join(this.tmp, "pb_data");
		[this.port] = await freePorts(1);
		this.url = `http://127.0.0.1:${this.port}`;
		await execFileP(bin, [`--dir=${dataDir}`, "superuser", "upsert", SUPERUSER.email, SUPERUSER.password], { cwd: this.tmp });
		const hooks = hooksDir ? [`--hooksDir=${hooksDir}`] : [];
		this.spawn(bin, [`--dir=${dataDir}`, "serve", `--http=127.0.0.1:${this.port}`, ...hooks], env);
		await this.waitReady(`${this.url}/api/health`, {}, (res) => res.status === 200);
		const auth = await this.rest("POST", "/api/collections/_superusers/auth-with-password", { identity: SUPERUSER.email, password: SUPERUSER.password }, { token: null });
		this.superToken = auth.token;
		// No request log: thousands of writes per run.
		await this.rest("PATCH", "/api/settings", { logs: { maxDays: 0 } });
	}

	async rest(method, pathname, body, { token = this.superToken } = {}) {
		const headers = {};
		if (body !== undefined) headers["Content-Type"] = "application/json";
		if (token) headers.Authorization = token;
		const res = await fetch(`${this.url}${pathname}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
		const text = await res.text();
		if (res.status < 200 || res.status > 299) throw new HttpError(method, pathname, res.status, text);
		return text ? JSON.parse(text) : undefined;
	}
}

export class CaddyServer extends Server {
	constructor() {
		super("caddy");
	}

	/** ports: [site, admin] chosen by the caller (default: free ones). */
	async start(caddyfileFor, { ports } = {}) {
		await this.makeTmp();
		const bin = process.env.E2E_CADDY_BIN || path.join(E2E_DIR, ".bin", "caddy");
		if (!fs.existsSync(bin)) throw new Error(`caddy binary not found at ${bin}: run e2e/scripts/build-caddy.sh`);
		[this.port, this.adminPort] = ports ?? (await freePorts(2));
		this.url = `http://127.0.0.1:${this.port}`;
		this.adminUrl = `http://127.0.0.1:${this.adminPort}`;
		this.caddyfileFor = caddyfileFor;
		const config = path.join(this.tmp, "Caddyfile");
		await fsp.writeFile(config, caddyfileFor({ port: this.port, adminPort: this.adminPort }, []));
		this.spawn(bin, ["run", "--config", config, "--adapter", "caddyfile"], {
			HOME: this.tmp,
			XDG_CONFIG_HOME: path.join(this.tmp, "config"),
			XDG_DATA_HOME: path.join(this.tmp, "data"),
		});
		await this.waitReady(`${this.adminUrl}/realtime/stats`, { headers: { Origin: this.adminUrl } }, (res) => res.status === 200);
	}

	/** Any admin call; returns {status, text, json}. Origin: Node's fetch sends Sec-Fetch-Mode. */
	async admin(method, pathname, body, contentType = "application/json") {
		const res = await fetch(`${this.adminUrl}${pathname}`, {
			method,
			headers: { Origin: this.adminUrl, ...(body === undefined ? {} : { "Content-Type": contentType }) },
			body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
		});
		const text = await res.text();
		let json;
		try {
			json = JSON.parse(text);
		} catch {}
		return { status: res.status, text, json };
	}

	/** Loads a new Caddyfile through the admin API; returns null or the error text. */
	async load(caddyfileText) {
		const res = await this.admin("POST", "/load", caddyfileText, "text/caddyfile");
		return res.status === 200 ? null : `${res.status} ${res.json?.error ?? res.text}`;
	}
}
