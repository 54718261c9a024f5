// Reading and driving the demo page through its data-testid attributes.
const STATE = '[data-testid="conn-state"]';

/** A fresh browser context and page on the demo; `errors` collects uncaught page exceptions. */
export async function openDemo(browser, server, { viewport = { width: 1280, height: 800 }, colorScheme = "light" } = {}) {
	const context = await browser.newContext({ viewport, colorScheme });
	const page = await context.newPage();
	const errors = [];
	const console = [];
	page.on("pageerror", (err) => errors.push(err.message));
	page.on("console", (msg) => console.push(`${msg.type()}: ${msg.text()}`));
	await page.goto(`${server.site}/`);
	return { page, context, errors, console };
}

/** What the page shows, in one line, for failure messages. */
export function describePage(page) {
	return page.evaluate(() => {
		const q = (id) => document.querySelector(`[data-testid="${id}"]`);
		const items = [...document.querySelectorAll('[data-testid="feed-item"]')];
		return JSON.stringify({
			conn: `${q("conn-state").dataset.state} ${q("conn-state").dataset.clientId || ""}`.trim(),
			sub: `${q("sub-status").dataset.state}: ${q("sub-status").textContent}`,
			active: [...q("sub-active").children].map((li) => li.textContent),
			error: q("sub-error").hidden ? undefined : q("sub-error").textContent,
			feed: `${items.length} item(s), newest: ${items.slice(0, 5).map((el) => `${el.dataset.action} ${el.dataset.topic} ${el.dataset.recordId}`).join(" | ")}`,
		});
	});
}

/** Awaits a page wait; on failure says what it waited for and what the page showed. */
async function explain(page, what, promise) {
	try {
		return await promise;
	} catch (err) {
		const seen = await describePage(page).catch(() => "(page not readable)");
		err.message = `${err.message}\n  waiting for: ${what}\n  page shows: ${seen}`;
		throw err;
	}
}

/** {state, clientId, text} of the connection indicator. */
export function connState(page) {
	return page.$eval(STATE, (el) => ({
		state: el.dataset.state,
		clientId: el.dataset.clientId || "",
		text: el.textContent.replace(/\s+/g, " ").trim(),
	}));
}

/** Waits for state "connected" with a clientId (other than `not`, if given); returns the clientId. */
export async function waitConnected(page, { not = null, timeout = 15_000 } = {}) {
	const handle = await explain(page, `connected${not ? ` with a clientId other than ${not}` : ""}`, page.waitForFunction(
		([sel, not]) => {
			const el = document.querySelector(sel);
			const id = el?.dataset.clientId;
			return el?.dataset.state === "connected" && id && id !== not ? id : false;
		},
		[STATE, not],
		{ timeout, polling: 25 },
	));
	return handle.jsonValue();
}

/** The subscription panel: status state, the clientId it last applied for, active topics, error text. */
export function subState(page) {
	return page.evaluate(() => {
		const q = (id) => document.querySelector(`[data-testid="${id}"]`);
		const error = q("sub-error");
		return {
			state: q("sub-status").dataset.state,
			clientId: q("sub-status").dataset.clientId || "",
			active: [...q("sub-active").children].map((li) => li.textContent),
			error: error.hidden ? "" : error.textContent,
		};
	});
}

/** Waits until the page reports `topics` applied for `clientId` (the server answered 204). */
export async function waitApplied(page, clientId, topics, timeout = 10_000) {
	await explain(page, `topics ${JSON.stringify(topics)} applied for ${clientId}`, page.waitForFunction(
		([clientId, topics]) => {
			const status = document.querySelector('[data-testid="sub-status"]');
			const active = [...document.querySelector('[data-testid="sub-active"]').children].map((li) => li.textContent);
			return status.dataset.state === "applied" && status.dataset.clientId === clientId && JSON.stringify(active) === JSON.stringify(topics);
		},
		[clientId, topics],
		{ timeout, polling: 25 },
	));
}

/** Types topics into the box and clicks Apply; waits until the POST has been answered; returns subState. */
export async function applyTopics(page, text, timeout = 10_000) {
	await page.fill('[data-testid="sub-input"]', text);
	await page.click('[data-testid="sub-apply"]');
	await explain(page, `an answer to applying ${JSON.stringify(text.slice(0, 80))}`,
		page.waitForFunction(() => document.querySelector('[data-testid="sub-status"]').dataset.state !== "pending", null, { timeout, polling: 25 }));
	return subState(page);
}

/** Feed items in arrival order (the page shows newest first). */
export async function feedItems(page) {
	const items = await page.$$eval('[data-testid="feed-item"]', (els) =>
		els.map((el) => ({
			seq: Number(el.dataset.seq),
			topic: el.dataset.topic,
			action: el.dataset.action,
			id: el.dataset.recordId,
			badge: el.querySelector(".badge")?.textContent,
			json: el.querySelector("pre")?.textContent,
		})),
	);
	return items.reverse();
}

/** Waits until the feed holds at least n items. */
export async function waitFeedCount(page, n, timeout = 10_000) {
	await explain(page, `${n} feed items`,
		page.waitForFunction((n) => document.querySelectorAll('[data-testid="feed-item"]').length >= n, n, { timeout, polling: 25 }));
}

/** Waits until a feed item matches {action, id, topic} (any of them may be omitted). */
export async function waitFeedItem(page, { action, id, topic }, timeout = 10_000) {
	await explain(page, `a feed item ${JSON.stringify({ action, id, topic })}`, page.waitForFunction(
		([action, id, topic]) =>
			[...document.querySelectorAll('[data-testid="feed-item"]')].some(
				(el) => (!action || el.dataset.action === action) && (!id || el.dataset.recordId === id) && (!topic || el.dataset.topic === topic),
			),
		[action, id, topic],
		{ timeout, polling: 25 },
	));
}

/** Records every value the connection indicator's data-state takes from now on (window.__states). */
export function recordStates(page) {
	return page.evaluate((sel) => {
		const el = document.querySelector(sel);
		window.__states = [el.dataset.state];
		new MutationObserver(() => {
			if (window.__states.at(-1) !== el.dataset.state) window.__states.push(el.dataset.state);
		}).observe(el, { attributes: true, attributeFilter: ["data-state"] });
	}, STATE);
}

export const recordedStates = (page) => page.evaluate(() => window.__states);
