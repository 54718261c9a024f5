// Our admin-only features: custom messages through the admin API and the bare `*` topic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { skipUnless } from "../lib/targets.js";
import { waitFor, collector, brief } from "../lib/util.js";

const ctx = useTarget();

test("pb.realtime.subscribe('custom') receives admin custom messages", { timeout: 60_000, skip: skipUnless("customMessages") }, async () => {
	const t = ctx.target;
	const pb = t.client();
	const custom = collector("custom");
	await pb.realtime.subscribe("custom", custom);

	// Controls on other clients: a near-miss topic name and a record subscription.
	const other = t.client();
	const near = collector("custom2");
	const posts = collector("posts/*");
	await other.realtime.subscribe("custom2", near);
	await other.collection("posts").subscribe("*", posts);

	const first = await t.sendMessage("custom", { hello: "world", n: 1 });
	assert.equal(first.delivered, 1, `delivered to exactly the one client subscribed to "custom": ${JSON.stringify(first)}`);
	const second = await t.sendMessage("custom", { hello: "again", list: [1, 2, 3], nested: { ok: true } });
	assert.equal(second.delivered, 1);

	await waitFor(() => custom.events.length >= 2, 10_000, () => JSON.stringify(custom.events));
	assert.deepEqual(custom.events, [
		{ hello: "world", n: 1 },
		{ hello: "again", list: [1, 2, 3], nested: { ok: true } },
	]);

	// Publish a record afterwards: once it reached the other client, no custom message went astray.
	await t.create("posts", { title: "after-custom", n: 1 });
	await waitFor(() => posts.events.length >= 1, 10_000, posts.summary);
	assert.deepEqual(near.events, [], "exact topic match only: custom2 gets nothing");
});

test("custom message with a clients list reaches only the listed clients", { timeout: 60_000, skip: skipUnless("customMessages") }, async () => {
	const t = ctx.target;
	const a = t.client();
	const b = t.client();
	const ca = collector("a");
	const cb = collector("b");
	await a.realtime.subscribe("custom", ca);
	await b.realtime.subscribe("custom", cb);
	const res = await t.sendMessage("custom", { to: "a" }, { clients: [a.realtime.clientId] });
	assert.equal(res.delivered, 1);
	const all = await t.sendMessage("custom", { to: "all" });
	assert.equal(all.delivered, 2);
	await waitFor(() => ca.events.length >= 2 && cb.events.length >= 1, 10_000, () => JSON.stringify([ca.events, cb.events]));
	assert.deepEqual(ca.events, [{ to: "a" }, { to: "all" }]);
	assert.deepEqual(cb.events, [{ to: "all" }]);
});

test("`*` topic receives every collection's events, each checked against its list rule", { timeout: 60_000, skip: skipUnless("wildcard") }, async () => {
	const t = ctx.target;
	const alice = await t.login("alice");
	const bob = await t.login("bob");

	const guest = t.client();
	const guestAll = collector("guest *");
	await guest.realtime.subscribe("*", guestAll);

	const authed = t.client();
	authed.authStore.save(alice.token, alice.record);
	const aliceAll = collector("alice *");
	await authed.realtime.subscribe("*", aliceAll);

	const p = await t.create("posts", { title: "wild-post", n: 1 });
	const na = await t.create("notes", { title: "wild-note-alice", n: 2, author: alice.record.id });
	const nb = await t.create("notes", { title: "wild-note-bob", n: 3, author: bob.record.id });
	const p2 = await t.create("posts", { title: "wild-post-2", n: 4 });

	await waitFor(() => guestAll.events.length >= 2 && aliceAll.events.length >= 3, 10_000, () => `${guestAll.summary()} | ${aliceAll.summary()}`);
	assert.deepEqual(guestAll.events.map(brief), [
		{ action: "create", id: p.id, title: "wild-post", n: 1 },
		{ action: "create", id: p2.id, title: "wild-post-2", n: 4 },
	], "a guest sees public posts only");
	assert.deepEqual(aliceAll.events.map(brief), [
		{ action: "create", id: p.id, title: "wild-post", n: 1 },
		{ action: "create", id: na.id, title: "wild-note-alice", n: 2 },
		{ action: "create", id: p2.id, title: "wild-post-2", n: 4 },
	], "alice sees posts and her own note, not bob's");
	assert.ok(!aliceAll.events.some((e) => e.record.id === nb.id));
	assert.deepEqual([...new Set(aliceAll.events.map((e) => e.record.collectionName))].sort(), ["notes", "posts"]);
});
