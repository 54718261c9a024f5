// The "site's own auth endpoint" that our Caddy module asks to turn a token into an auth record
// (Caddyfile `auth { url ... record_path record }`). It answers like PocketBase's auth-refresh:
// 200 {"token":..., "record":{...}} for a token it issued and that has not expired, 401 otherwise.
import http from "node:http";
import crypto from "node:crypto";
import { b64url, randomId } from "./util.js";

export class AuthServer {
	constructor() {
		this.users = new Map(); // name -> record
		this.tokens = new Map(); // token -> { record, exp }
		this.requests = []; // every Authorization header seen (for debugging)
		this.server = http.createServer((req, res) => this.handle(req, res));
	}

	listen(port) {
		return new Promise((resolve, reject) => {
			this.server.once("error", reject);
			this.server.listen(port, "127.0.0.1", () => resolve());
		});
	}

	close() {
		this.server.closeAllConnections?.();
		return new Promise((resolve) => this.server.close(() => resolve()));
	}

	user(name) {
		let record = this.users.get(name);
		if (!record) {
			record = {
				id: randomId(),
				collectionId: "_pb_users_auth_",
				collectionName: "users",
				email: `${name}@example.com`,
				emailVisibility: false,
				verified: true,
				name,
			};
			this.users.set(name, record);
		}
		return record;
	}

	/** Issues a fresh JWT-shaped token for the user `name` (created on first use). */
	login(name, { ttlSeconds = 3600 } = {}) {
		const record = this.user(name);
		const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
		const token = [
			b64url({ alg: "HS256", typ: "JWT" }),
			b64url({ collectionId: record.collectionId, exp, id: record.id, refreshable: true, type: "auth" }),
			b64url(crypto.randomBytes(32).toString("hex")),
		].join(".");
		this.tokens.set(token, { record, exp });
		return { token, record: { ...record } };
	}

	handle(req, res) {
		let raw = req.headers["authorization"] ?? "";
		this.requests.push(raw);
		if (/^bearer /i.test(raw)) raw = raw.slice(7);
		raw = raw.trim();
		const entry = this.tokens.get(raw);
		const url = new URL(req.url, "http://x");
		if (url.pathname !== "/auth" || !entry || entry.exp * 1000 < Date.now()) {
			res.writeHead(401, { "Content-Type": "application/json" });
			res.end(JSON.stringify({ data: {}, message: "The request requires valid record authorization token.", status: 401 }));
			return;
		}
		res.writeHead(200, { "Content-Type": "application/json" });
		res.end(JSON.stringify({ token: raw, record: entry.record }));
	}
}
