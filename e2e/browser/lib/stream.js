// A bare page with the browser's native EventSource and nothing else (no demo), for tests of the
// protocol as a browser speaks it, e.g. resume after a cut stream.

/**
 * Opens an empty page at `url` (served by Playwright, so it costs the server nothing) and, in it,
 * what README's "Resuming a dropped stream" tells native EventSource users to do: subscribe to
 * `topics` on a fresh PB_CONNECT, nothing on a resumed one. Everything the page sees goes to a log
 * that streamLog() reads. EventSource and fetch go to url's origin.
 */
export async function openStreamPage(context, url, topics) {
	const page = await context.newPage();
	const errors = [];
	page.on("pageerror", (err) => errors.push(err.message));
	await page.route(url, (route) => route.fulfill({ contentType: "text/html", body: "<!doctype html><title>stream</title>" }));
	await page.goto(url);
	await page.evaluate((topics) => {
		const log = [];
		window.rt = { log };
		const es = new EventSource("/api/realtime");
		es.addEventListener("PB_CONNECT", async (e) => {
			const data = JSON.parse(e.data);
			log.push({ type: "connect", data });
			if (data.resumed) return;
			const res = await fetch("/api/realtime", {
				method: "POST",
				headers: { "Content-Type": "application/json" },
				body: JSON.stringify({ clientId: data.clientId, subscriptions: topics }),
			});
			log.push({ type: "subscribed", status: res.status });
		});
		for (const name of topics) {
			es.addEventListener(name, (e) => log.push({ type: "event", name, data: JSON.parse(e.data), lastEventId: e.lastEventId }));
		}
		es.onerror = () => log.push({ type: "error", readyState: es.readyState });
	}, topics);
	return { page, errors };
}

/**
 * The page's log, one line per entry: `connect {data}`, `subscribed <status>`,
 * `error readyState=<n>`, `<topic> <action> <record id>`, or `<topic> <data.phase>` for a custom message.
 */
export async function streamLog(page) {
	const log = await page.evaluate(() => window.rt.log);
	return log.map((l) => {
		switch (l.type) {
			case "connect":
				return `connect ${JSON.stringify(l.data)}`;
			case "subscribed":
				return `subscribed ${l.status}`;
			case "error":
				return `error readyState=${l.readyState}`;
			default:
				return l.data.record ? `${l.name} ${l.data.action} ${l.data.record.id}` : `${l.name} ${l.data.phase}`;
		}
	});
}

/** The id of the last event the page received (EventSource's lastEventId then). */
export function lastEventId(page) {
	return page.evaluate(() => window.rt.log.findLast((l) => l.type === "event").lastEventId);
}
