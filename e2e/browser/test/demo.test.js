// The demo page in headless Chromium with the browser's native EventSource, against our Caddy; and
// (last two tests, sharing this file's Caddy and Chromium) resume after a stream cut by a proxy, over HTTP/1.1 and HTTPS (HTTP/2).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import fs from "node:fs";
import path from "node:path";
import { startCaddy, startBrowser, waitFor, REPO_DIR } from "../lib/harness.js";
import { openStreamPage, streamLog, lastEventId } from "../lib/stream.js";
import { startProxy, headerOf } from "../../lib/proxy.js";
import {
	openDemo, connState, waitConnected, waitApplied, applyTopics,
	feedItems, waitFeedCount, waitFeedItem, recordStates, recordedStates,
} from "../lib/page.js";

const SCREENSHOT = process.env.DEMO_SCREENSHOT || path.join(REPO_DIR, "docs", "demo.png");

let server;
let browser;
let open = []; // contexts opened by the current test

before(async () => {
	server = await startCaddy();
	browser = await startBrowser();
}, { timeout: 180_000 });

after(async () => {
	await browser?.close();
	await server?.stop();
}, { timeout: 30_000 });

afterEach(async (t) => {
	for (const ctx of open) {
		if (ctx.errors.length) t.diagnostic(`page errors: ${ctx.errors.join(" | ")}`);
		await ctx.context.close();
	}
	open = [];
});

async function demo(opts) {
	const ctx = await openDemo(browser, server, opts);
	open.push(ctx);
	return ctx;
}

/** A PocketBase-style 15-character record id with a readable prefix. */
const rid = (prefix, n) => `${prefix}${String(n).padStart(15 - prefix.length, "0")}`;
const post = (id, fields = {}) => ({ id, collectionName: "posts", collectionId: "pbc_posts00001", ...fields });

test("connects, shows its clientId and subscribes to the default posts/*", { timeout: 60_000 }, async () => {
	const { page, errors } = await demo();
	const id = await waitConnected(page);
	assert.match(id, /^[A-Za-z0-9]{40}$/, "clientId has PocketBase's shape");

	const shown = await connState(page);
	assert.match(shown.text, /connected/i);
	assert.ok(shown.text.includes(id), `the indicator shows the clientId: ${shown.text}`);
	assert.equal(await page.textContent('[data-testid="client-id"]'), id);

	await waitApplied(page, id, ["posts/*"]);
	const listed = await server.client(id);
	assert.deepEqual(listed.subscriptions, ["posts/*"], "the server holds what the page says it applied");
	assert.deepEqual(errors, []);
});

test("the curl commands shown on the page work as printed", { timeout: 60_000 }, async () => {
	const { page, context } = await demo();
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);

	const publish = await page.textContent('[data-testid="curl-publish"]');
	assert.match(publish, /^curl -X POST http:\/\/localhost:2019\/realtime\/events \\\n/);
	const stream = await page.textContent('[data-testid="curl-stream"]');
	assert.equal(stream, `curl -N ${server.site}/api/realtime`, "the stream command uses the page's own host");

	// Copy button puts exactly the command on the clipboard.
	await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.site });
	await page.click('[data-testid="curl-copy"]');
	await page.waitForFunction(() => document.querySelector('[data-testid="curl-copy"]').textContent === "Copied", null, { timeout: 5000 });
	assert.equal(await page.evaluate(() => navigator.clipboard.readText()), publish);

	// Run the printed command through a shell, pointed at this test's admin port instead of :2019.
	const cmd = publish.replace("http://localhost:2019", server.admin);
	const { stdout } = await promisify(execFile)("sh", ["-c", cmd], { timeout: 10_000 });
	assert.deepEqual(JSON.parse(stdout), { published: 1 });
	const body = JSON.parse(publish.match(/-d '(.*)'$/s)[1]);
	await waitFeedItem(page, { action: "create", id: body.record.id, topic: "posts/*" });
});

test("50 creates published in one POST show up in publish order", { timeout: 60_000 }, async () => {
	const { page, errors } = await demo();
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);

	const events = Array.from({ length: 50 }, (_, i) => ({ action: "create", record: post(rid("bulk", i), { title: `Post ${i}`, n: i }) }));
	assert.deepEqual(await server.publish(events), { published: 50 });

	await waitFeedCount(page, 50);
	const items = await feedItems(page);
	assert.equal(items.length, 50, "exactly one feed item per event");
	assert.deepEqual(items.map((it) => it.id), events.map((e) => e.record.id), "publish order");
	for (const [i, it] of items.entries()) {
		assert.equal(it.action, "create");
		assert.equal(it.badge, "create");
		assert.equal(it.topic, "posts/*");
		assert.deepEqual(JSON.parse(it.json), events[i].record, `item ${i} shows the record JSON`);
	}
	// Newest first on screen.
	const firstOnScreen = await page.getAttribute('[data-testid="feed-item"]:first-child', "data-record-id");
	assert.equal(firstOnScreen, events.at(-1).record.id);
	assert.equal(await page.textContent('[data-testid="feed-count"]'), "50");
	assert.deepEqual(errors, []);
});

test("subscribing to one record topic shows only that record's events", { timeout: 60_000 }, async () => {
	const { page, errors } = await demo();
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);

	const target = rid("target", 1);
	const other = rid("other", 1);
	const topic = `posts/${target}`;
	const sub = await applyTopics(page, topic);
	assert.equal(sub.state, "applied", `apply failed: ${sub.error}`);
	assert.deepEqual(sub.active, [topic]);
	assert.deepEqual((await server.client(id)).subscriptions, [topic], "the POST replaced the whole set");

	// Everything else is published before the last matching event, so if any of it were delivered
	// it would be in the feed by the time that last one is (events reach a client in publish order).
	await server.publish([
		{ action: "create", record: post(other, { title: "not me" }) },
		{ action: "update", record: post(target, { title: "v2" }) },
		{ action: "create", record: { id: target, collectionName: "comments", body: "same id, other collection" } },
		{ action: "update", record: post(other, { title: "still not me" }) },
		{ action: "delete", record: post(target, { title: "v2" }) },
	]);
	await waitFeedItem(page, { action: "delete", id: target });
	const items = await feedItems(page);
	assert.deepEqual(
		items.map(({ topic, action, id }) => ({ topic, action, id })),
		[{ topic, action: "update", id: target }, { topic, action: "delete", id: target }],
	);
	assert.deepEqual(items.map((it) => it.badge), ["update", "delete"]);
	assert.deepEqual(errors, []);
});

test("a refused subscription shows the server's error and keeps the previous topics", { timeout: 60_000 }, async () => {
	const { page, errors } = await demo();
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);

	const sub = await applyTopics(page, `posts/ok, posts/${"x".repeat(2500)}`); // 2506 bytes > 2500
	assert.equal(sub.state, "error");
	assert.match(sub.error, /Something went wrong while processing your request\. \(400\)/);
	assert.match(sub.error, /subscriptions\[1\]: The length must be no more than 2500\./);
	assert.deepEqual(sub.active, ["posts/*"], "the page still lists the topics the server holds");
	assert.deepEqual((await server.client(id)).subscriptions, ["posts/*"]);

	await server.publish({ action: "create", record: post(rid("stillhere", 1)) });
	await waitFeedItem(page, { action: "create", id: rid("stillhere", 1), topic: "posts/*" });

	// A good set afterwards clears the error.
	const ok = await applyTopics(page, "posts/*\ncustom");
	assert.equal(ok.state, "applied");
	assert.equal(ok.error, "");
	assert.deepEqual(ok.active, ["posts/*", "custom"]);
	assert.deepEqual(errors, []);
});

test("custom messages show with their data", { timeout: 60_000 }, async () => {
	const { page } = await demo();
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);
	assert.equal((await applyTopics(page, "custom")).state, "applied");

	assert.deepEqual(await server.message("custom", { hello: "world", n: 1 }), { delivered: 1 });
	await waitFeedItem(page, { topic: "custom" });
	const [item] = await feedItems(page);
	assert.equal(item.action, "message");
	assert.equal(item.id, "");
	assert.deepEqual(JSON.parse(item.json), { hello: "world", n: 1 });
});

test("after a server-side disconnect it reconnects with a new clientId and resubscribes", { timeout: 60_000 }, async () => {
	const { page, errors } = await demo();
	const oldId = await waitConnected(page);
	await waitApplied(page, oldId, ["posts/*"]);
	await server.publish({ action: "create", record: post(rid("before", 1)) });
	await waitFeedItem(page, { id: rid("before", 1) });

	await recordStates(page);
	assert.deepEqual(await server.disconnect(oldId), { disconnected: oldId });

	const newId = await waitConnected(page, { not: oldId, timeout: 20_000 });
	assert.notEqual(newId, oldId);
	const states = await recordedStates(page);
	assert.deepEqual(states.slice(0, 2), ["connected", "reconnecting"], `states seen: ${states}`);
	assert.equal(states.at(-1), "connected");
	assert.ok((await connState(page)).text.includes(newId), "the indicator shows the new clientId");

	// The page re-POSTed its topics for the new connection.
	await waitApplied(page, newId, ["posts/*"]);
	const ids = (await server.clients()).map((c) => c.id);
	assert.ok(!ids.includes(oldId), "the old client is gone");
	assert.ok(ids.includes(newId));
	assert.deepEqual((await server.client(newId)).subscriptions, ["posts/*"]);

	const after = [1, 2, 3].map((n) => ({ action: "update", record: post(rid("after", n), { n }) }));
	await server.publish(after);
	await waitFeedItem(page, { id: rid("after", 3) });
	const items = await feedItems(page);
	assert.deepEqual(items.map((it) => `${it.action} ${it.id}`), [`create ${rid("before", 1)}`, ...after.map((e) => `update ${e.record.id}`)],
		"the feed keeps the old event and gets each new one once");
	assert.deepEqual(errors, []);
});

test("works on a narrow window", { timeout: 60_000 }, async () => {
	const { page } = await demo({ viewport: { width: 380, height: 800 } });
	const id = await waitConnected(page);
	await waitApplied(page, id, ["posts/*"]);
	await server.publish({ action: "create", record: post(rid("narrow", 1), { title: "A rather long title ".repeat(8), url: "https://example.com/" + "a".repeat(120) }) });
	await waitFeedItem(page, { id: rid("narrow", 1) });
	const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
	assert.ok(widths.scroll <= widths.client, `no horizontal scrolling: ${JSON.stringify(widths)}`);
	if (process.env.SHOTS_DIR) await page.screenshot({ path: path.join(process.env.SHOTS_DIR, "narrow.png"), fullPage: true });
});

test("screenshot of the page with a few events", { timeout: 60_000 }, async () => {
	for (const colorScheme of process.env.SHOTS_DIR ? ["dark", "light"] : ["light"]) {
		const { page } = await demo({ viewport: { width: 1280, height: 800 }, colorScheme });
		const id = await waitConnected(page);
		await waitApplied(page, id, ["posts/*"]);
		assert.equal((await applyTopics(page, "posts/*, custom")).state, "applied");

		const now = "2026-11-26 12:00:00.000Z";
		const hello = post("x7d2k9qm4va1b3c", { title: "Hello, realtime!", author: "ana", published: true, created: now, updated: now });
		const second = post("p0r8s6t4u2v1w9x", { title: "Events arrive in order", author: "ben", published: false, created: now, updated: now });
		await server.publish([
			{ action: "create", record: hello },
			{ action: "create", record: second },
			{ action: "update", record: { ...second, published: true } },
		]);
		await server.message("custom", { type: "presence", user: "ana", online: true });
		await server.publish({ action: "delete", record: hello });
		await waitFeedCount(page, 5);
		await page.evaluate(() => document.activeElement?.blur());

		const file = colorScheme === "light" ? SCREENSHOT : path.join(process.env.SHOTS_DIR, `demo-${colorScheme}.png`);
		fs.mkdirSync(path.dirname(file), { recursive: true });
		const before = Date.now();
		await page.screenshot({ path: file, animations: "disabled" });
		const png = fs.readFileSync(file);
		assert.equal(png.subarray(1, 4).toString(), "PNG");
		assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [1280, 800], "1280x800");
		assert.ok(fs.statSync(file).mtimeMs >= before - 1000, "the file was written now");
	}
});

test("native EventSource cut by a proxy reconnects with Last-Event-ID and gets every missed event once, in order", { timeout: 60_000 }, async () => {
	await resumeThroughProxy({ tls: false });
});

// Browsers reach an HTTPS site over HTTP/2: the stream is one of the connection's streams, written by
// a goroutine (HTTP/2 cannot be taken over like HTTP/1.1), and the cut drops the whole connection.
test("over HTTPS (HTTP/2), native EventSource cut by a proxy resumes the same way", { timeout: 60_000 }, async () => {
	await resumeThroughProxy({ tls: true });
});

// An admin DELETE ends a session for good; a cut on the way (a proxy, a dead network path) does not.
async function resumeThroughProxy({ tls }) {
	const proxy = await startProxy(tls ? server.tlsPort : Number(new URL(server.site).port));
	const context = await browser.newContext({ ignoreHTTPSErrors: tls }); // tls internal: a CA Chromium does not know
	const earlier = new Set((await server.clients()).map((c) => c.id)); // other tests' streams, maybe still ending
	try {
		const topics = ["posts/*", "news"];
		const origin = tls ? `https://127.0.0.1:${proxy.port}` : proxy.url;
		const { page, errors } = await openStreamPage(context, `${origin}/stream-test`, topics);
		const log = () => streamLog(page);
		await waitFor(async () => (await log()).includes("subscribed 204"), 15_000, "PB_CONNECT and an answered subscription POST");
		const [connect] = await log();
		const { clientId, ...rest } = JSON.parse(connect.slice("connect ".length));
		assert.deepEqual(rest, {}, `a fresh stream's PB_CONNECT is PocketBase's: ${connect}`);
		if (tls) {
			const protocols = await page.evaluate(() => performance.getEntriesByType("resource")
				.filter((e) => e.name.endsWith("/api/realtime")).map((e) => e.nextHopProtocol));
			assert.ok(protocols.length > 0 && protocols.every((p) => p === "h2"), `the realtime requests went over HTTP/2: ${protocols}`);
		}
		// Record events and a custom message; returns the lines the page should log for them.
		const round = async (phase) => {
			const events = [
				{ action: "create", record: post(rid(phase, 1)) },
				{ action: "create", record: post(rid(phase, 2)) },
				{ action: "update", record: post(rid(phase, 1), { n: 1 }) },
				{ action: "delete", record: post(rid(phase, 2)) },
			];
			await server.publish(events.slice(0, 2));
			await server.publish(events.slice(2));
			await server.message("news", { phase });
			return [...events.map((e) => `posts/* ${e.action} ${e.record.id}`), `news ${phase}`];
		};
		const waitLines = async (n, what) => {
			try {
				await waitFor(async () => (await log()).length >= n, 15_000, what);
			} catch (err) {
				err.message += `\n  page log: ${JSON.stringify(await log(), null, 1)}`;
				throw err;
			}
		};

		const expected = [connect, "subscribed 204", ...(await round("before"))];
		await waitLines(expected.length, "the first round");
		const lastBeforeCut = await lastEventId(page);

		proxy.cut(); // both sides reset; the browser's reconnect waits at the proxy until release()
		expected.push("error readyState=0"); // CONNECTING: EventSource retries by itself
		await waitLines(expected.length, "the browser to notice the cut");
		expected.push(`connect ${JSON.stringify({ clientId, resumed: true })}`, ...(await round("gap")));
		proxy.release();
		await waitLines(expected.length, "the resumed stream and the missed events");

		expected.push(...(await round("after")));
		await server.message("news", { phase: "end" }); // nothing extra trails the last expected line
		expected.push("news end");
		await waitLines(expected.length, "the last round");
		assert.deepEqual(await log(), expected, "every event once, in publish order, after one resumed PB_CONNECT");

		if (!tls) { // the proxy sees the request heads only in plain text; over TLS the resumed PB_CONNECT says as much
			const streams = proxy.heads.filter((h) => h.startsWith("GET /api/realtime "));
			assert.equal(streams.length, 2, `two stream requests: ${JSON.stringify(streams)}`);
			assert.equal(headerOf(streams[0], "Last-Event-ID"), undefined);
			assert.equal(headerOf(streams[1], "Last-Event-ID"), lastBeforeCut, "Chromium sent the last id it received");
			assert.equal(proxy.heads.filter((h) => h.startsWith("POST /api/realtime ")).length, 1, "subscribed once, not again on resume");
		}
		const clients = (await server.clients()).filter((c) => !earlier.has(c.id));
		assert.deepEqual(clients.map((c) => [c.id, [...c.subscriptions].sort()]), [[clientId, [...topics].sort()]],
			"one client, its subscriptions restored");
		assert.deepEqual(errors, []);
	} finally {
		await context.close();
		await proxy.close();
	}
}
