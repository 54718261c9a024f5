// Small helpers shared by the e2e tests: polling waits, ids, ports, collectors.
import net from "node:net";
import crypto from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";

export { delay };

/** Thrown from a waitFor predicate to stop waiting at once (e.g. the server process died). */
export class WaitAborted extends Error {}

/**
 * Polls predicate until it returns a truthy value (which is returned) or timeoutMs passes.
 * On timeout it throws with describe() appended, so a failure says what was seen.
 */
export async function waitFor(predicate, timeoutMs = 10_000, describe = () => "", intervalMs = 25) {
	const deadline = Date.now() + timeoutMs;
	let lastErr;
	for (;;) {
		try {
			const v = await predicate();
			if (v) return v;
		} catch (err) {
			if (err instanceof WaitAborted) throw err;
			lastErr = err;
		}
		if (Date.now() >= deadline) {
			const what = typeof describe === "string" ? describe : describe();
			const cause = lastErr ? ` (last error: ${lastErr.message})` : "";
			throw new Error(`waitFor timed out after ${timeoutMs} ms${what ? ": " + what : ""}${cause}`);
		}
		await delay(intervalMs);
	}
}

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A PocketBase-style record id: 15 characters of [a-z0-9]. */
export function randomId(length = 15) {
	const bytes = crypto.randomBytes(length);
	let s = "";
	for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
	return s;
}

/** A free TCP port on 127.0.0.1 (the OS picks it; tiny race until the server binds it). */
export function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.unref();
		srv.on("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address();
			srv.close(() => resolve(port));
		});
	});
}

/** Distinct free ports (so two calls in a row cannot hand out the same one). */
export async function freePorts(n) {
	const ports = new Set();
	while (ports.size < n) ports.add(await freePort());
	return [...ports];
}

/** A callback that records everything it is called with, for SDK subscriptions. */
export function collector(label = "events") {
	const events = [];
	const cb = (e) => events.push(e);
	cb.events = events;
	cb.label = label;
	cb.summary = () =>
		`${label}: ${events.length} event(s) ` +
		JSON.stringify(events.slice(-10).map((e) => ({ action: e.action, id: e.record?.id, title: e.record?.title, n: e.record?.n })));
	return cb;
}

/** Just the parts of a record event the tests compare across targets. */
export function brief(e) {
	return { action: e.action, id: e.record?.id, title: e.record?.title, n: e.record?.n };
}

/** base64url of a JSON value (for JWT-shaped tokens). */
export function b64url(value) {
	return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
}

/** A JWT-shaped token nobody issued: bad signature, and expired when asked. */
export function forgedToken(record, { expired = true } = {}) {
	const now = Math.floor(Date.now() / 1000);
	const header = b64url({ alg: "HS256", typ: "JWT" });
	const payload = b64url({
		collectionId: record.collectionId ?? "_pb_users_auth_",
		exp: expired ? now - 3600 : now + 3600,
		id: record.id,
		refreshable: true,
		type: "auth",
	});
	return `${header}.${payload}.${b64url(crypto.randomBytes(32).toString("hex"))}`;
}

/**
 * Asserts that events (SDK payloads) match expected brief() shapes: in order when the target
 * promises ordered delivery, otherwise as a multiset (PocketBase: one goroutine per message).
 */
export function assertEvents(assert, events, expected, ordered, message = "") {
	const got = events.map(brief);
	if (ordered) {
		assert.deepEqual(got, expected, message);
	} else {
		const key = (e) => JSON.stringify(e);
		assert.deepEqual(got.map(key).sort(), expected.map(key).sort(), message);
	}
}
