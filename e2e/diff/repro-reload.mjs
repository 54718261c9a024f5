// Reproduction (not part of the suite): after a Caddy config reload, a new SDK client in the same
// Node process fails to connect ("Failed to establish realtime connection"; undici: "other side
// closed") on every second reload. Without the reload (NORELOAD=1) nothing fails. This is why the
// differential suite loads one config for the whole run. The cause is Caddy's, not the module's:
// undici opens a spare connection ahead of need; the previous config's server accepted it, and when
// its first request arrives after the reload the connection is closed without a response (a raw
// socket opened before a /load and written after it gets the same for `respond "hi"`).
//   node diff/repro-reload.mjs            # prints "fails N" (N > 0 reproduces)
//   NORELOAD=1 node diff/repro-reload.mjs # fails 0
import "../lib/setup.js";
import PocketBase from "pocketbase";
import { CaddyServer } from "./servers.js";
import { delay } from "../lib/util.js";

const config = (n) => ({ port, adminPort }) => `{
	admin 127.0.0.1:${adminPort}
	auto_https off
	persist_config off
}
http://127.0.0.1:${port} {
	realtime /api/realtime {
		collection c${n} {
			list_rule ""
		}
	}
}
`;
const caddy = new CaddyServer();
await caddy.start(config(0));
let fails = 0;
try {
	for (let round = 1; round <= 8; round++) {
		if (!process.env.NORELOAD) {
			const err = await caddy.load(config(round)({ port: caddy.port, adminPort: caddy.adminPort }));
			if (err) throw new Error(err);
		}
		await delay(500);
		const pb = new PocketBase(caddy.url);
		pb.autoCancellation(false);
		try {
			await pb.collection("c1").subscribe("*", () => {});
		} catch (e) {
			fails++;
			console.log(`round ${round}: ${e.originalError?.message ?? e.message}`);
		}
		pb.realtime.subscriptions = {};
		pb.realtime.disconnect();
	}
} finally {
	await caddy.stop();
}
console.log("fails", fails);
