// Unsubscribing one topic keeps the others; unsubscribing everything ends the stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { features } from "../lib/targets.js";
import { waitFor, collector, brief } from "../lib/util.js";

const ctx = useTarget();
const T = { timeout: 60_000 };

/** Whether the server still knows clientId: ours asks the admin API, PocketBase gets a POST (404 = gone). */
async function serverKnows(t, clientId) {
	if (features.clientList) return t.hasClient(clientId);
	const res = await t.postSubscriptions(clientId, ["posts/*"]);
	if (res.status === 404) return false;
	if (res.status === 204) return true;
	throw new Error(`unexpected POST status ${res.status}: ${res.text}`);
}

test("the unsubscribe function for one topic leaves the others working", T, async () => {
	const t = ctx.target;
	const r = await t.create("posts", { title: "u", n: 0 });
	const pb = t.client();
	const all = collector("posts/*");
	const one = collector(`posts/${r.id}`);
	const custom = collector("custom");
	await pb.collection("posts").subscribe("*", all);
	const unsubOne = await pb.collection("posts").subscribe(r.id, one);
	if (features.customMessages) await pb.realtime.subscribe("custom", custom);

	await t.update("posts", r, { title: "u1", n: 1 });
	await waitFor(() => all.events.length >= 1 && one.events.length >= 1, 10_000, () => `${all.summary()} | ${one.summary()}`);

	await unsubOne();
	const clientId = pb.realtime.clientId;
	assert.ok(pb.realtime.isConnected, "still connected after removing one topic");

	await t.update("posts", r, { title: "u2", n: 2 });
	await t.update("posts", r, { title: "u3", n: 3 });
	await waitFor(() => all.events.length >= 3, 10_000, all.summary);
	assert.deepEqual(one.events.map(brief), [{ action: "update", id: r.id, title: "u1", n: 1 }], "nothing after its unsubscribe");
	assert.deepEqual(all.events.map((e) => e.record.title).sort(), ["u1", "u2", "u3"]);
	assert.equal(pb.realtime.clientId, clientId, "same connection");

	if (features.customMessages) {
		const res = await t.sendMessage("custom", { still: "here" });
		assert.equal(res.delivered, 1);
		await waitFor(() => custom.events.length >= 1, 10_000, () => JSON.stringify(custom.events));
		assert.deepEqual(custom.events, [{ still: "here" }]);
	}
	if (features.clientList) {
		const me = (await t.listClients()).find((c) => c.id === clientId);
		assert.ok(me, "client listed");
		assert.deepEqual([...me.subscriptions].sort(), ["custom", "posts/*"].sort());
	}
});

test("collection(...).unsubscribe(id) removes only that topic", T, async () => {
	const t = ctx.target;
	const r1 = await t.create("posts", { title: "a", n: 1 });
	const r2 = await t.create("posts", { title: "b", n: 2 });
	const pb = t.client();
	const c1 = collector("r1");
	const c2 = collector("r2");
	await pb.collection("posts").subscribe(r1.id, c1);
	await pb.collection("posts").subscribe(r2.id, c2);
	await pb.collection("posts").unsubscribe(r1.id);

	await t.update("posts", r1, { title: "a1", n: 10 });
	await t.update("posts", r2, { title: "b1", n: 20 });
	await waitFor(() => c2.events.length >= 1, 10_000, c2.summary);
	await t.update("posts", r2, { title: "b2", n: 21 });
	await waitFor(() => c2.events.length >= 2, 10_000, c2.summary);
	assert.deepEqual(c1.events, [], "r1 unsubscribed");
	assert.deepEqual(c2.events.map((e) => e.record.title).sort(), ["b1", "b2"]);
});

test("unsubscribe() of everything closes the stream and the server forgets the client", T, async () => {
	const t = ctx.target;
	const pb = t.client();
	const disconnects = [];
	pb.realtime.onDisconnect = (subs) => disconnects.push(subs);
	const cb = collector("posts/*");
	await pb.collection("posts").subscribe("*", cb);
	await pb.realtime.subscribe("custom", () => {});
	const clientId = pb.realtime.clientId;
	assert.ok(clientId, "connected");
	assert.equal(await serverKnows(t, clientId), true, "server knows the client while subscribed");

	await pb.realtime.unsubscribe();
	assert.equal(pb.realtime.isConnected, false);
	assert.deepEqual(disconnects, [[]], "onDisconnect([]) once: a deliberate unsubscribe-all");

	await waitFor(async () => !(await serverKnows(t, clientId)), 10_000, `client ${clientId} still known to the server`);
});
