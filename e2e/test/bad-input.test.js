// Edge and bad input: subscribe before connect, PocketBase's limits and error bodies,
// invalid tokens as guest, abandoned streams.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { features } from "../lib/targets.js";
import { waitFor, collector, forgedToken } from "../lib/util.js";

const ctx = useTarget();
const T = { timeout: 60_000 };

const GENERIC = "Something went wrong while processing your request.";

test("subscribing before any connection works: the SDK connects, then POSTs every topic", T, async () => {
	const t = ctx.target;
	const pb = t.client();
	assert.equal(pb.realtime.isConnected, false);
	const cbs = [collector("posts/*"), collector("posts/* again"), collector("notes/*")];
	// Three subscribes in the same tick, before any stream exists.
	await Promise.all([
		pb.collection("posts").subscribe("*", cbs[0]),
		pb.collection("posts").subscribe("*", cbs[1]),
		pb.collection("notes").subscribe("*", cbs[2]),
	]);
	assert.equal(pb.realtime.isConnected, true);
	assert.match(pb.realtime.clientId, /^\S+$/);
	const r = await t.create("posts", { title: "early", n: 1 });
	await waitFor(() => cbs[0].events.length >= 1 && cbs[1].events.length >= 1, 10_000, () => cbs.map((c) => c.summary()).join(" | "));
	assert.equal(cbs[0].events[0].record.id, r.id);
	assert.equal(cbs[1].events[0].record.id, r.id);
	if (features.clientList) {
		const me = (await t.listClients()).find((c) => c.id === pb.realtime.clientId);
		assert.deepEqual([...me.subscriptions].sort(), ["notes/*", "posts/*"]);
	}
});

test("raw connect: PB_CONNECT carries the clientId in id: and data", T, async () => {
	const t = ctx.target;
	const raw = await t.connectRaw();
	assert.match(raw.clientId, /^[A-Za-z0-9]+$/);
	assert.deepEqual(JSON.parse(raw.connectData), { clientId: raw.clientId });
	const ok = await t.postSubscriptions(raw.clientId, ["posts/*"]);
	assert.equal(ok.status, 204, ok.text);
	assert.equal(ok.text, "");
});

test("1001 topics -> 400 with PocketBase's body; 1000 topics -> 204", T, async () => {
	const t = ctx.target;
	const raw = await t.connectRaw();
	const topics = (n) => Array.from({ length: n }, (_, i) => `posts/topic${i}`);

	const bad = await t.postSubscriptions(raw.clientId, topics(1001));
	assert.equal(bad.status, 400, bad.text);
	const expected = {
		data: {
			subscriptions: {
				code: "validation_length_too_long",
				message: "The length must be no more than 1000.",
				params: { max: 1000, min: 0 },
			},
		},
		message: GENERIC,
		status: 400,
	};
	assert.deepEqual(bad.json, expected);
	assert.equal(bad.text.trim(), JSON.stringify(expected), "byte-for-byte (key order data, message, status)");

	const ok = await t.postSubscriptions(raw.clientId, topics(1000));
	assert.equal(ok.status, 204, ok.text);
});

test("a 3000-byte topic -> 400 keyed by its index; 2500 bytes -> 204", T, async () => {
	const t = ctx.target;
	const raw = await t.connectRaw();
	const long = (bytes) => "posts/" + "x".repeat(bytes - "posts/".length);

	const bad = await t.postSubscriptions(raw.clientId, ["posts/*", long(3000)]);
	assert.equal(bad.status, 400, bad.text);
	const expected = {
		data: {
			subscriptions: {
				1: {
					code: "validation_length_too_long",
					message: "The length must be no more than 2500.",
					params: { max: 2500, min: 0 },
				},
			},
		},
		message: GENERIC,
		status: 400,
	};
	assert.deepEqual(bad.json, expected);

	// Length counts bytes: 1250 two-byte characters are 2500 bytes (ok), one more is too many.
	const ok = await t.postSubscriptions(raw.clientId, ["posts/*", long(2500), "é".repeat(1250)]);
	assert.equal(ok.status, 204, ok.text);
	const multi = await t.postSubscriptions(raw.clientId, ["é".repeat(1251)]);
	assert.equal(multi.status, 400, multi.text);
	assert.deepEqual(Object.keys(multi.json?.data?.subscriptions ?? {}), ["0"]);
});

test("unknown clientId -> 404 with PocketBase's body", T, async () => {
	const t = ctx.target;
	const res = await t.postSubscriptions("no-such-client-" + Date.now(), ["posts/*"]);
	assert.equal(res.status, 404, res.text);
	assert.deepEqual(res.json, { data: {}, message: "Missing or invalid client id.", status: 404 });
});

test("an expired or invalid token is treated as guest: 204, and no private events", T, async () => {
	const t = ctx.target;
	const alice = await t.login("alice");
	const expired = forgedToken(alice.record, { expired: true });
	const garbage = "not-a-token";

	// Raw POSTs: accepted as guest.
	for (const token of [expired, garbage, `Bearer ${expired}`]) {
		const raw = await t.connectRaw();
		const res = await t.postSubscriptions(raw.clientId, ["notes/*"], { token });
		assert.equal(res.status, 204, `token ${token.slice(0, 20)}...: ${res.status} ${res.text}`);
		raw.close();
	}

	// Through the SDK: the expired token subscribes fine but sees nothing private.
	const guest = t.client();
	guest.authStore.save(expired, alice.record);
	const gNotes = collector("expired notes/*");
	const gPosts = collector("expired posts/*");
	await guest.collection("notes").subscribe("*", gNotes);
	await guest.collection("posts").subscribe("*", gPosts);

	const real = t.client(); // control: alice's real token sees her note
	real.authStore.save(alice.token, alice.record);
	const rNotes = collector("real notes/*");
	await real.collection("notes").subscribe("*", rNotes);

	const note = await t.create("notes", { title: "private", n: 1, author: alice.record.id });
	await t.create("posts", { title: "public", n: 2 });
	await waitFor(() => rNotes.events.length >= 1 && gPosts.events.length >= 1, 10_000, () => `${rNotes.summary()} | ${gPosts.summary()}`);
	assert.equal(rNotes.events[0].record.id, note.id, "control: a valid token sees the note");
	assert.deepEqual(gNotes.events, [], "the expired token got no private events");

	// An auth client may not fall back to an invalid token (auth -> guest is a downgrade: 403).
	real.authStore.save(garbage, alice.record);
	const err = await real.collection("posts").subscribe("*", () => {}).then(() => null, (e) => e);
	assert.equal(err?.status, 403, `downgrade to an invalid token: ${err?.status} ${JSON.stringify(err?.response)}`);
});

test("an abandoned client (stream closed without unsubscribe) is forgotten by the server", T, async () => {
	const t = ctx.target;
	const raw = await t.connectRaw();
	const sub = await t.postSubscriptions(raw.clientId, ["posts/*"]);
	assert.equal(sub.status, 204);
	if (features.clientList) assert.ok(await t.hasClient(raw.clientId), "listed while open");
	raw.close();

	if (features.clientList) {
		await waitFor(async () => !(await t.hasClient(raw.clientId)), 10_000, `client ${raw.clientId} still listed`);
	}
	await waitFor(async () => (await t.postSubscriptions(raw.clientId, ["posts/*"])).status === 404, 10_000, `POST with abandoned client ${raw.clientId} never got 404`);
	const res = await t.postSubscriptions(raw.clientId, []);
	assert.deepEqual(res.json, { data: {}, message: "Missing or invalid client id.", status: 404 });
});
