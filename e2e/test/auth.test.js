// Auth over realtime: authStore token on the POST upgrades a guest client, owner rules filter
// events per user, and switching users on a live connection is refused (403).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { features } from "../lib/targets.js";
import { waitFor, collector, assertEvents } from "../lib/util.js";

const ctx = useTarget();

test("authStore token upgrades a guest client; owner rule shows each user only their notes; switching user is 403", { timeout: 90_000 }, async () => {
	const t = ctx.target;
	const alice = await t.login("alice");
	const bob = await t.login("bob");
	assert.match(alice.record.id, /^[a-z0-9]{15}$/);
	assert.notEqual(alice.record.id, bob.record.id);

	// Phase 1: a guest subscribed to notes/* sees none of alice's notes (list rule needs auth).
	const pa = t.client();
	const aNotes = collector("alice notes/*");
	const aPosts = collector("alice posts/*");
	await pa.collection("posts").subscribe("*", aPosts);
	await pa.collection("notes").subscribe("*", aNotes);
	const guestClientId = pa.realtime.clientId;
	const a0 = await t.create("notes", { title: "a0", n: 0, author: alice.record.id });
	await t.create("posts", { title: "sentinel-1", n: 1 });
	await waitFor(() => aPosts.events.length >= 1, 10_000, aPosts.summary);
	assert.deepEqual(aNotes.events, [], "a guest gets no private notes");

	// Phase 2: save alice's token; the next subscribe POSTs it and upgrades the same connection.
	pa.authStore.save(alice.token, alice.record);
	const aOne = collector("alice notes/a0");
	await pa.collection("notes").subscribe(a0.id, aOne);
	assert.equal(pa.realtime.clientId, guestClientId, "upgraded in place, no reconnect");

	// bob, authenticated from the start, is the control for what alice must not see.
	const pbB = t.client();
	pbB.authStore.save(bob.token, bob.record);
	const bNotes = collector("bob notes/*");
	await pbB.collection("notes").subscribe("*", bNotes);

	const a1 = await t.create("notes", { title: "a1", n: 1, author: alice.record.id });
	const b1 = await t.create("notes", { title: "b1", n: 1, author: bob.record.id });
	const a2 = await t.create("notes", { title: "a2", n: 2, author: alice.record.id });
	const b2 = await t.create("notes", { title: "b2", n: 2, author: bob.record.id });
	await t.update("notes", a0, { title: "a0-edited", n: 5 });

	await waitFor(() => aNotes.events.length >= 3 && bNotes.events.length >= 2 && aOne.events.length >= 1, 10_000, () => `${aNotes.summary()} | ${bNotes.summary()} | ${aOne.summary()}`);
	assertEvents(assert, aNotes.events, [
		{ action: "create", id: a1.id, title: "a1", n: 1 },
		{ action: "create", id: a2.id, title: "a2", n: 2 },
		{ action: "update", id: a0.id, title: "a0-edited", n: 5 },
	], features.orderedDelivery, "alice sees only her notes");
	assertEvents(assert, bNotes.events, [
		{ action: "create", id: b1.id, title: "b1", n: 1 },
		{ action: "create", id: b2.id, title: "b2", n: 2 },
	], features.orderedDelivery, "bob sees only his notes");
	assertEvents(assert, aOne.events, [{ action: "update", id: a0.id, title: "a0-edited", n: 5 }], true, "view rule on notes/<id>");
	for (const e of aNotes.events) assert.equal(e.record.author, alice.record.id);

	// Phase 3: switch the authStore to bob without reconnecting: the next subscribe is refused.
	pa.authStore.save(bob.token, bob.record);
	const stolen = collector("alice-conn notes/b1");
	const err = await pa.collection("notes").subscribe(b1.id, stolen).then(
		() => null,
		(e) => e,
	);
	assert.ok(err, "subscribe with another user's token must reject");
	assert.equal(err.status, 403, `status: ${err.status} ${JSON.stringify(err.response)}`);
	assert.deepEqual(err.response, {
		data: {},
		message: "The current and the previous request authorization don't match.",
		status: 403,
	});
	assert.equal(pa.realtime.clientId, guestClientId, "still the same connection");

	// Nothing of bob's reaches alice's connection; it stays alice's (old subscriptions, old auth).
	await t.update("notes", b1, { title: "b1-edited", n: 11 });
	const b3 = await t.create("notes", { title: "b3", n: 3, author: bob.record.id });
	const a3 = await t.create("notes", { title: "a3", n: 3, author: alice.record.id });
	await waitFor(() => bNotes.events.length >= 4 && aNotes.events.some((e) => e.record.id === a3.id), 10_000, () => `${aNotes.summary()} | ${bNotes.summary()}`);
	assert.ok(bNotes.events.some((e) => e.record.id === b3.id) && bNotes.events.some((e) => e.record.title === "b1-edited"), "control: bob got his events");
	assert.deepEqual(stolen.events, [], "nothing on the refused topic");
	assert.ok(!aNotes.events.some((e) => e.record.author === bob.record.id), `no bob note on alice's connection: ${aNotes.summary()}`);
	assert.equal(aNotes.events.length, 4);
});
