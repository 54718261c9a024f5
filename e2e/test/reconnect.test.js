// A server-side disconnect: the SDK notices, reconnects with a new clientId, resubscribes.
// Ours: DELETE /realtime/clients/{id} on the admin API. PocketBase has no such API, so there the
// server is restarted (same port and data), which cuts every stream the same way from the SDK's view.
// Then (ours only) resume: a raw eventsource@4 client whose stream a proxy cuts comes back with
// Last-Event-ID and gets what it missed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { features, TARGET, skipUnless } from "../lib/targets.js";
import { waitFor, collector, brief } from "../lib/util.js";
import { startProxy, headerOf } from "../lib/proxy.js";

const ctx = useTarget();

test(`server-side disconnect (${features.adminDisconnect ? "admin DELETE" : "server restart"}) -> SDK reconnects, resubscribes and keeps receiving`, { timeout: 90_000 }, async () => {
	const t = ctx.target;
	const pb = t.client();
	const disconnects = [];
	const connects = [];
	pb.realtime.onDisconnect = (subs) => disconnects.push(subs);
	await pb.realtime.subscribe("PB_CONNECT", (e) => connects.push(e.clientId));
	const cb = collector("posts/*");
	await pb.collection("posts").subscribe("*", cb);

	// A bystander that must not be disturbed by an admin disconnect of another client.
	const bystander = t.client();
	const bcb = collector("bystander");
	const bystanderConnects = [];
	await bystander.realtime.subscribe("PB_CONNECT", (e) => bystanderConnects.push(e.clientId));
	await bystander.collection("posts").subscribe("*", bcb);
	const bystanderId = bystander.realtime.clientId;

	const before = await t.create("posts", { title: "before", n: 1 });
	await waitFor(() => cb.events.length >= 1, 10_000, cb.summary);
	const firstId = pb.realtime.clientId;
	assert.equal(connects.length, 1);
	assert.equal(connects[0], firstId, "PB_CONNECT data.clientId equals the id the SDK took from lastEventId");

	if (features.adminDisconnect) {
		await t.disconnectClient(firstId);
	} else {
		await t.restart();
	}

	await waitFor(() => connects.length >= 2 && pb.realtime.isConnected, 30_000, () => `connects=${JSON.stringify(connects)} disconnects=${JSON.stringify(disconnects)}`);
	assert.equal(disconnects.length, 1, `onDisconnect fired once: ${JSON.stringify(disconnects)}`);
	assert.ok(disconnects[0].includes("posts/*"), `onDisconnect got the active subscriptions: ${JSON.stringify(disconnects[0])}`);
	const secondId = pb.realtime.clientId;
	assert.notEqual(secondId, firstId, "a new clientId after reconnect");
	assert.equal(connects[1], secondId);

	if (features.clientList) {
		const clients = await t.listClients();
		assert.ok(!clients.some((c) => c.id === firstId), "old client gone");
		const me = clients.find((c) => c.id === secondId);
		assert.ok(me, "new client listed");
		assert.ok(me.subscriptions.includes("posts/*"), `resubscribed: ${JSON.stringify(me.subscriptions)}`);
	}

	if (!features.adminDisconnect) {
		// A restart cuts everyone: let the bystander finish its own resubscribe first.
		await waitFor(() => bystanderConnects.length >= 2, 30_000, () => `bystander connects=${JSON.stringify(bystanderConnects)}`);
	}

	// Resubscribed: events published after the reconnect arrive.
	const after = await t.create("posts", { title: "after", n: 2 });
	await waitFor(() => cb.events.some((e) => e.record.id === after.id), 15_000, cb.summary);
	assert.deepEqual(cb.events.map(brief), [
		{ action: "create", id: before.id, title: "before", n: 1 },
		{ action: "create", id: after.id, title: "after", n: 2 },
	]);

	if (features.adminDisconnect) {
		// Only the target client was cut: the bystander kept its stream and got both events.
		await waitFor(() => bcb.events.length >= 2, 10_000, bcb.summary);
		assert.equal(bystander.realtime.clientId, bystanderId, "bystander kept its connection");
		assert.deepEqual(bcb.events.map((e) => e.record.title), ["before", "after"]);
	} else {
		await waitFor(() => bcb.events.length >= 2, 15_000, bcb.summary);
		assert.notEqual(bystander.realtime.clientId, bystanderId, `${TARGET} restart cut the bystander too`);
	}
});

test("a raw eventsource@4 stream cut by a proxy reconnects with Last-Event-ID and gets every missed event once, in order", { timeout: 60_000, skip: skipUnless("resume") }, async () => {
	const t = ctx.target;
	const proxy = await startProxy(t.port);
	try {
		const raw = await t.connectRaw(10_000, { url: proxy.url });
		assert.deepEqual(JSON.parse(raw.connectData), { clientId: raw.clientId }, "a fresh stream's PB_CONNECT is PocketBase's");
		const connects = [];
		const errors = [];
		raw.es.addEventListener("PB_CONNECT", (e) => connects.push(JSON.parse(e.data)));
		raw.es.addEventListener("error", () => errors.push(raw.es.readyState));
		const topics = ["posts/*", "notes/*", "news"];
		for (const name of topics) raw.listen(name);
		const alice = await t.login("alice");
		const bob = await t.login("bob");
		const sub = await t.postSubscriptions(raw.clientId, topics, { token: alice.token });
		assert.equal(sub.status, 204, sub.text);

		// One round of everything a client can miss: record events, one of them hidden from it by
		// the notes rule (bob's note), and a custom message. Returns what alice's stream should show.
		let n = 0;
		const round = async (phase) => {
			const p = await t.create("posts", { title: `${phase} post`, n: ++n });
			await t.create("notes", { title: `${phase} bob's note`, n: ++n, author: bob.record.id });
			const a = await t.create("notes", { title: `${phase} alice's note`, n: ++n, author: alice.record.id });
			await t.update("posts", p, { n: ++n });
			await t.sendMessage("news", { phase });
			return [`posts/* create ${phase} post`, `notes/* create ${phase} alice's note`, `posts/* update ${phase} post`, `news ${phase}`];
		};
		const seen = () => raw.events.map((e) => {
			const d = JSON.parse(e.data);
			return e.name === "news" ? `news ${d.phase}` : `${e.name} ${d.action} ${d.record.title}`;
		});

		const expected = await round("before");
		await waitFor(() => raw.events.length >= expected.length, 10_000, () => JSON.stringify(seen()));
		const lastBeforeCut = raw.events.at(-1).lastEventId;

		proxy.cut(); // both sides reset; the client's reconnect waits at the proxy
		await waitFor(() => errors.length > 0, 10_000, "the client to notice the cut");
		assert.equal(errors[0], raw.es.CONNECTING, "eventsource@4 reconnects by itself");
		expected.push(...(await round("gap")));
		proxy.release();

		await waitFor(() => connects.length >= 1, 15_000, () => `second PB_CONNECT; errors=${JSON.stringify(errors)}`);
		assert.deepEqual(connects, [{ clientId: raw.clientId, resumed: true }], "resumed as the same client");
		const reconnect = proxy.heads.filter((h) => h.startsWith("GET /api/realtime ")).slice(1);
		assert.equal(reconnect.length, 1, `one reconnect request: ${JSON.stringify(reconnect)}`);
		assert.equal(headerOf(reconnect[0], "Last-Event-ID"), lastBeforeCut, "it sent the last id it received");

		expected.push(...(await round("after")));
		await waitFor(() => raw.events.length >= expected.length, 10_000, () => JSON.stringify(seen()));
		await t.sendMessage("news", { phase: "end" }); // nothing extra trails the last expected event
		await waitFor(() => raw.events.length > expected.length, 10_000, () => JSON.stringify(seen()));
		assert.deepEqual(seen(), [...expected, "news end"], "every event once, in publish order, bob's notes never");
		const ids = raw.events.map((e) => e.lastEventId);
		assert.equal(new Set(ids).size, ids.length, "every frame has its own id");

		const clients = await t.listClients();
		assert.deepEqual(clients.filter((c) => c.id === raw.clientId).map((c) => [...c.subscriptions].sort()), [[...topics].sort()],
			"one client with that id, its subscriptions restored");
	} finally {
		await proxy.close();
	}
});
