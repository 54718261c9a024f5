// A TCP proxy on 127.0.0.1 that a test controls: it can cut every connection through it (as a dead
// network path or a proxy restart would) and hold new ones until released, so events published
// meanwhile are missed for sure. The server sees 127.0.0.1 as the client either way.
// Plain node:net, no dependencies: the browser suite (e2e/browser) imports it too.
import net from "node:net";

/** Starts a proxy to host:port on a free 127.0.0.1 port. */
export async function startProxy(port, host = "127.0.0.1") {
	const pairs = new Set(); // {client, upstream} piped both ways
	const heads = []; // the first bytes each client sent, up to the end of its request head
	let held = null; // connections waiting for release() while the path is down

	function forward(client) {
		const upstream = net.connect(port, host);
		const pair = { client, upstream };
		pairs.add(pair);
		const end = () => {
			pairs.delete(pair);
			client.destroy();
			upstream.destroy();
		};
		for (const s of [client, upstream]) {
			s.on("error", end);
			s.on("close", end);
		}
		client.pipe(upstream); // resumes the client
		upstream.pipe(client);
	}

	function recordHead(client) {
		let head = "";
		const onData = (chunk) => {
			head += chunk.toString("latin1");
			const end = head.indexOf("\r\n\r\n");
			if (end >= 0 || head.length > 16_384) {
				heads.push(end >= 0 ? head.slice(0, end) : head);
				client.off("data", onData);
			}
		};
		client.on("data", onData);
	}

	const server = net.createServer((client) => {
		client.pause(); // explicitly: recordHead's listener must not start the flow of a held connection
		recordHead(client);
		if (held) {
			held.push(client);
			client.on("error", () => {});
			client.once("close", () => {
				if (held?.includes(client)) held.splice(held.indexOf(client), 1);
			});
			return;
		}
		forward(client);
	});
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, "127.0.0.1", resolve);
	});
	const url = `http://127.0.0.1:${server.address().port}`;

	return {
		url,
		port: server.address().port,
		/** Open connections through the proxy. */
		get open() {
			return pairs.size;
		},
		/** Connections that arrived while the path was down, waiting for release(). */
		get waiting() {
			return held ? held.length : 0;
		},
		/** Request heads (request line and headers) of every connection so far, in arrival order. */
		heads,
		/**
		 * Resets every open connection on both sides; with hold (the default) new connections wait,
		 * unanswered, until release().
		 */
		cut({ hold = true } = {}) {
			if (hold && !held) held = [];
			for (const { client, upstream } of [...pairs]) {
				client.resetAndDestroy();
				upstream.resetAndDestroy();
			}
			pairs.clear();
		},
		/** Forwards the held connections and every later one. */
		release() {
			const waiting = held ?? [];
			held = null;
			for (const client of waiting) if (!client.destroyed) forward(client);
		},
		close() {
			this.cut({ hold: false });
			for (const client of held ?? []) client.destroy();
			held = null;
			return new Promise((resolve) => server.close(() => resolve()));
		},
	};
}

/** The value of header `name` in a request head recorded by the proxy, or undefined. */
export function headerOf(head, name) {
	const want = name.toLowerCase();
	for (const line of head.split("\r\n").slice(1)) {
		const colon = line.indexOf(":");
		if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === want) return line.slice(colon + 1).trim();
	}
	return undefined;
}
