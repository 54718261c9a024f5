// A server-side disconnect: the SDK notices, reconnects with a new clientId, resubscribes.
// Ours: DELETE /realtime/clients/{id} on the admin API. PocketBase has no such API, so there the
// server is restarted (same port and data), which cuts every stream the same way from the SDK's view.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { features, TARGET } from "../lib/targets.js";
import { waitFor, collector, brief } from "../lib/util.js";

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
