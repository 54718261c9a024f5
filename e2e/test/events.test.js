// Record events through the SDK's collection subscriptions: order, per-record topics, options.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useTarget } from "../lib/harness.js";
import { TARGET, features } from "../lib/targets.js";
import { waitFor, collector, brief, assertEvents } from "../lib/util.js";

const ctx = useTarget();
const T = { timeout: 90_000 };

test("subscribe('*') receives create, update and delete in publish order (300 creates)", T, async (tc) => {
	const t = ctx.target;
	const pb = t.client();
	const cb = collector("posts/*");
	await pb.collection("posts").subscribe("*", cb);

	const N = 300;
	const created = await t.createMany(
		"posts",
		Array.from({ length: N }, (_, i) => ({ title: `order-${i}`, n: i })),
	);
	assert.equal(created.length, N);
	const updated = await t.update("posts", created[0], { title: "order-0-updated", n: 1000 });
	const deleted = await t.remove("posts", created[1]);

	await waitFor(() => cb.events.length >= N + 2, 30_000, cb.summary);

	const expected = [
		...created.map((r, i) => ({ action: "create", id: r.id, title: `order-${i}`, n: i })),
		{ action: "update", id: updated.id, title: "order-0-updated", n: 1000 },
		{ action: "delete", id: deleted.id, title: "order-1", n: 1 },
	];
	const got = cb.events.map(brief);
	const key = (e) => JSON.stringify(e);
	const outOfPlace = got.filter((e, i) => key(e) !== key(expected[i])).length;
	if (features.orderedDelivery) {
		const first = got.findIndex((e, i) => key(e) !== key(expected[i]));
		assert.equal(first, -1, `first out-of-place event at index ${first}: got ${key(got[first])}, expected ${key(expected[first])}`);
		assert.equal(got.length, expected.length, "no extra events");
	} else {
		// PocketBase sends each message from its own goroutine, so order is not guaranteed
		// (our deliberate difference). Every event must still arrive exactly once, intact.
		assert.deepEqual([...got].map(key).sort(), expected.map(key).sort());
		tc.diagnostic(`${TARGET}: ${outOfPlace} of ${got.length} events arrived out of publish order`);
	}
	for (const e of cb.events) {
		assert.equal(e.record.collectionName, "posts");
		assert.ok(Object.keys(e).includes("record") && Object.keys(e).includes("action"), "payload is {record, action}");
	}
});

test("subscribe(RECORD_ID) receives only that record's events", T, async () => {
	const t = ctx.target;
	const r1 = await t.create("posts", { title: "one", n: 1 });
	const r2 = await t.create("posts", { title: "two", n: 2 });

	const pb = t.client();
	const only = collector(`posts/${r1.id}`);
	await pb.collection("posts").subscribe(r1.id, only);

	await t.update("posts", r2, { title: "two-a", n: 20 });
	await t.update("posts", r1, { title: "one-a", n: 10 });
	await t.remove("posts", r2);
	await t.update("posts", r1, { title: "one-b", n: 11 });
	await t.create("posts", { title: "three", n: 3 });
	await t.remove("posts", { ...r1, title: "one-b", n: 11 });

	await waitFor(() => only.events.length >= 3, 10_000, only.summary);
	assertEvents(assert, only.events, [
		{ action: "update", id: r1.id, title: "one-a", n: 10 },
		{ action: "update", id: r1.id, title: "one-b", n: 11 },
		{ action: "delete", id: r1.id, title: "one-b", n: 11 },
	], features.orderedDelivery);
});

test("subscribe('*', cb, {filter, fields}) gets only matching events with only the picked fields", T, async () => {
	const t = ctx.target;
	const pb = t.client();
	const filtered = collector("filtered");
	const all = collector("all");
	await pb.collection("posts").subscribe("*", filtered, { filter: "n > 5", fields: "id,title" });
	await pb.collection("posts").subscribe("*", all); // same client, unfiltered: the control

	const values = [3, 6, 1, 9, 5, 100];
	const recs = [];
	for (const n of values) recs.push(await t.create("posts", { title: `f-${n}`, n }));

	await waitFor(() => all.events.length >= values.length && filtered.events.some((e) => e.record?.title === "f-100"), 10_000, () => `${filtered.summary()} | ${all.summary()}`);

	assert.deepEqual(
		all.events.map((e) => e.record.n).sort((a, b) => a - b),
		[...values].sort((a, b) => a - b),
		"the unfiltered subscription saw every create",
	);
	assert.deepEqual(
		filtered.events.map((e) => e.record.title).sort(),
		["f-100", "f-6", "f-9"],
		"only n > 5 passed the filter",
	);
	for (const e of filtered.events) {
		assert.equal(e.action, "create");
		assert.deepEqual(Object.keys(e.record).sort(), ["id", "title"], `only the picked fields: ${JSON.stringify(e.record)}`);
		assert.equal(e.record.id, recs[values.indexOf(Number(e.record.title.slice(2)))].id);
	}
	// The unfiltered subscription on the same client still gets full records.
	assert.ok("n" in all.events[0].record && "collectionName" in all.events[0].record);
});

test(`${TARGET}: a record event reaches every subscribed SDK client`, T, async () => {
	const t = ctx.target;
	const clients = [t.client(), t.client(), t.client()];
	const cbs = clients.map((_, i) => collector(`client${i}`));
	await Promise.all(clients.map((pb, i) => pb.collection("posts").subscribe("*", cbs[i])));
	const r = await t.create("posts", { title: "fanout", n: 7 });
	await waitFor(() => cbs.every((cb) => cb.events.length >= 1), 10_000, () => cbs.map((c) => c.summary()).join(" | "));
	for (const cb of cbs) assert.deepEqual(cb.events.map(brief), [{ action: "create", id: r.id, title: "fanout", n: 7 }]);
});
