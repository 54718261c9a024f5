// The work of realtime.pb.js: export a changed record as a superuser reads it,
// queue it per Caddy admin endpoint, and POST queued events in batches to
// /realtime/events. Not a hook file itself (PocketBase loads only *.pb.js).
//
// Hooks run synchronously in the request that changed the record, so a send
// costs that request one POST on loopback. When Caddy is unreachable the
// event stays queued and the endpoint is marked down: later record changes
// are only queued (no waiting) until a retry is due (backoff 1s .. 30s), when
// the next change, or the cron job once a minute, sends everything queued, in
// order. Events older than REALTIME_RETRY_FOR, beyond REALTIME_QUEUE_MAX, or
// refused by Caddy are dropped with a warning that counts them.
//
// Queue state is in $app.store() (shared by every VM, lost on restart): one
// entry per endpoint, changed only inside store.setFunc, which holds the
// store's lock, so claims and acknowledgements are atomic across requests.

const STORE_KEY = "caddyRealtime:";
const HOLD_KEY = "caddyRealtime.hold";
const BATCH_EVENTS = 500;
const BATCH_BYTES = 1 << 20;
const MAX_ROUNDS = 100; // batches one pump sends before leaving the rest to the next change or the cron job

function settings() {
	const env = (name, def) => {
		const v = String($os.getenv(name) || "").trim();
		return v === "" ? def : v;
	};
	const num = (name, def) => {
		const n = Number(env(name, ""));
		return Number.isFinite(n) && n > 0 ? n : def;
	};
	const list = (name, def) =>
		env(name, def)
			.split(",")
			.map((s) => s.trim())
			.filter((s) => s !== "");
	const broker = env("REALTIME_BROKER", "");
	return {
		urls: list("REALTIME_ADMIN_URL", "http://127.0.0.1:2019").map((u) => u.replace(/\/+$/, "")),
		query: broker ? "?broker=" + encodeURIComponent(broker) : "",
		skip: list("REALTIME_SKIP_COLLECTIONS", ""),
		timeout: Math.max(1, Math.round(num("REALTIME_TIMEOUT", 2))),
		queueMax: num("REALTIME_QUEUE_MAX", 10000),
		retryForMs: num("REALTIME_RETRY_FOR", 600) * 1000,
		// Below NATS's default max_payload (1 MB), with room for the transport's envelope.
		maxEventBytes: num("REALTIME_MAX_EVENT_BYTES", 900000),
	};
}

// exportRecord is the record as PocketBase's API shows it to a superuser
// (hidden fields and email included, password and tokenKey left out), plus
// the tokenKey of auth records: caddy-realtime never sends it to clients but
// logs out the clients of a record whose tokenKey changed, as PocketBase does.
function exportRecord(record) {
	const clone = record.clone(); // visibility flags set on the hook's record would leak into the API response
	clone.unhide(...clone.collection().fields.fieldNames());
	clone.ignoreEmailVisibility(true);
	const data = JSON.parse(JSON.stringify(clone));
	delete data.expand;
	if (clone.collection().isAuth()) {
		data.tokenKey = record.tokenKey();
	}
	return data;
}

function utf8Length(s) {
	let n = s.length;
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) n += 2;
		else if (c >= 0x80) n += 1; // a surrogate pair counts 2 + 2 = 4
	}
	return n;
}

function freshState(old) {
	if (!old) {
		return { head: 0, tail: 0, items: {}, sending: false, retryAt: 0, failures: 0, dropped: 0 };
	}
	return {
		head: old.head,
		tail: old.tail,
		items: old.items, // the same Go map: changed in place under the store's lock
		sending: old.sending,
		retryAt: old.retryAt,
		failures: old.failures,
		dropped: old.dropped,
	};
}

function logDropped(app, url, count, total, reason, extra) {
	app.logger().warn("realtime: events dropped", "count", count, "dropped_total", total, "reason", reason, "admin", url, ...(extra || []));
}

// forward queues the record event of a hook for every admin endpoint and sends
// what is due. It never throws: PocketBase's request has already succeeded.
function forward(e, action) {
	const app = e.app;
	try {
		const cfg = settings();
		const collection = e.record.collection();
		if (cfg.skip.includes(collection.name) || cfg.skip.includes(collection.id)) {
			return;
		}
		// The id is the idempotency key: a retried event is skipped by Caddy if an
		// earlier attempt got through after all (timeout after publishing).
		const event = {
			id: `pb:${collection.id}:${e.record.id}:${action}:${$security.randomString(16)}`,
			action,
			collection: collection.name,
			record: exportRecord(e.record),
		};
		const json = JSON.stringify(event);
		const label = `${action} ${collection.name}/${e.record.id}`;
		const bytes = json.length * 3 > cfg.maxEventBytes ? utf8Length(json) : json.length;
		const held = (app.store().get(HOLD_KEY) || 0) > 0;
		for (const url of cfg.urls) {
			if (bytes > cfg.maxEventBytes) {
				const total = countDrop(app, url, 1);
				logDropped(app, url, 1, total, `event of ${bytes} bytes is over REALTIME_MAX_EVENT_BYTES`, ["event", label]);
				continue;
			}
			enqueue(app, url, cfg, { json, bytes, label, at: Date.now() });
			pump(app, url, cfg, { held });
		}
	} catch (err) {
		app.logger().error("realtime: cannot forward record event", "action", action, "error", String(err));
	}
}

function countDrop(app, url, n) {
	let total = 0;
	app.store().setFunc(STORE_KEY + url, (old) => {
		const s = freshState(old);
		s.dropped += n;
		total = s.dropped;
		return s;
	});
	return total;
}

function enqueue(app, url, cfg, item) {
	let overflow = 0, total = 0;
	app.store().setFunc(STORE_KEY + url, (old) => {
		const s = freshState(old);
		s.items[String(s.tail)] = item;
		s.tail++;
		while (s.tail - s.head > cfg.queueMax) {
			delete s.items[String(s.head)];
			s.head++;
			overflow++;
		}
		s.dropped += overflow;
		total = s.dropped;
		return s;
	});
	if (overflow > 0) {
		logDropped(app, url, overflow, total, "queue over REALTIME_QUEUE_MAX while Caddy is unreachable");
	}
}

// pump sends the queue of one endpoint unless a send is in flight (that sender
// takes what was queued meanwhile), the endpoint is down and no retry is due,
// or a batch request is still running (it flushes when done).
function pump(app, url, cfg, { held = false, force = false } = {}) {
	let batchMax = BATCH_EVENTS;
	for (let round = 0; round < MAX_ROUNDS; round++) {
		const now = Date.now();
		let claim = null, expired = 0, total = 0;
		app.store().setFunc(STORE_KEY + url, (old) => {
			const s = freshState(old);
			if (s.sending || s.head === s.tail) return s;
			if (!force && now < s.retryAt) return s;
			if (held && s.tail - s.head < BATCH_EVENTS) return s;
			const seqs = [], events = [];
			let bytes = 2;
			for (let seq = s.head; seq < s.tail && seqs.length < batchMax; seq++) {
				const item = s.items[String(seq)];
				if (!item) continue; // dropped
				if (now - item.at > cfg.retryForMs) {
					delete s.items[String(seq)];
					expired++;
					continue;
				}
				if (seqs.length > 0 && bytes + item.bytes + 1 > BATCH_BYTES) break;
				seqs.push(seq);
				events.push(item);
				bytes += item.bytes + 1;
			}
			s.dropped += expired;
			total = s.dropped;
			if (seqs.length === 0) {
				s.head = s.tail; // everything left had expired
				return s;
			}
			s.sending = true;
			claim = { seqs, events, failures: s.failures };
			return s;
		});
		if (expired > 0) {
			logDropped(app, url, expired, total, "not delivered within REALTIME_RETRY_FOR");
		}
		if (!claim) return;

		const outcome = send(url, cfg, claim.events);
		// Which claimed events are done with (delivered or refused for good).
		let done = [];
		let failure = "";
		if (outcome.status === 200) {
			done = claim.seqs;
			if (claim.failures > 0) {
				app.logger().info("realtime: Caddy reachable again", "admin", url, "failed_attempts", claim.failures);
			}
		} else if (outcome.status === 400 && outcome.index >= 0 && outcome.index < claim.seqs.length) {
			// One event Caddy will never take (all-or-nothing batch): drop it, resend the rest.
			done = [claim.seqs[outcome.index]];
			const total = countDrop(app, url, 1);
			logDropped(app, url, 1, total, "refused by Caddy: " + outcome.error, ["event", claim.events[outcome.index].label]);
		} else if ((outcome.status === 413 || /split the batch/.test(outcome.error)) && claim.seqs.length > 1) {
			batchMax = Math.max(1, Math.floor(claim.seqs.length / 2)); // too large for one request or one NATS batch: split
		} else if (outcome.status === 400 || outcome.status === 413) {
			done = claim.seqs;
			const total = countDrop(app, url, claim.seqs.length);
			logDropped(app, url, claim.seqs.length, total, `refused by Caddy (${outcome.status}): ${outcome.error}`, ["event", claim.events[0].label]);
		} else {
			failure = outcome.error || `status ${outcome.status}`;
		}

		let failures = 0, pending = false;
		app.store().setFunc(STORE_KEY + url, (old) => {
			const s = freshState(old);
			s.sending = false;
			for (const seq of done) delete s.items[String(seq)];
			while (s.head < s.tail && !s.items[String(s.head)]) s.head++;
			if (failure) {
				s.failures++;
				s.retryAt = Date.now() + Math.min(30000, 1000 * 2 ** Math.min(s.failures - 1, 5));
			} else {
				s.failures = 0;
				s.retryAt = 0;
			}
			failures = s.failures;
			pending = s.head < s.tail;
			return s;
		});
		if (failure) {
			if (failures === 1 || failures % 10 === 0) {
				app.logger().warn("realtime: cannot publish to Caddy, events queued for retry", "admin", url, "error", failure, "failed_attempts", failures, "queued", claim.seqs.length);
			}
			return;
		}
		if (!pending) return;
		held = false; // what is left was queued behind this send: send it now
	}
}

// send POSTs one batch; status 0 is a network error.
function send(url, cfg, events) {
	const body = "[" + events.map((e) => e.json).join(",") + "]";
	let res;
	try {
		res = $http.send({
			url: url + "/realtime/events" + cfg.query,
			method: "POST",
			body,
			headers: { "content-type": "application/json" },
			timeout: cfg.timeout,
		});
	} catch (err) {
		return { status: 0, index: -1, error: String(err) };
	}
	let error = "";
	try {
		error = (res.json && res.json.error) || "";
	} catch (_) {}
	if (!error && res.statusCode !== 200) error = toString(res.body).slice(0, 300);
	const m = /^event (\d+): /.exec(error);
	return { status: res.statusCode, index: m ? Number(m[1]) : -1, error };
}

// hold and release bracket a batch request: its records are queued and sent
// together when it ends (or in full batches of 500 meanwhile).
function hold(app) {
	app.store().setFunc(HOLD_KEY, (n) => (n || 0) + 1);
}

function release(app) {
	app.store().setFunc(HOLD_KEY, (n) => Math.max(0, (n || 0) - 1));
	flush(app, { held: (app.store().get(HOLD_KEY) || 0) > 0 });
}

// flush sends what is queued for every endpoint (the cron job's retry).
function flush(app, { held = false } = {}) {
	try {
		const cfg = settings();
		for (const url of cfg.urls) pump(app, url, cfg, { held });
	} catch (err) {
		app.logger().error("realtime: flush failed", "error", String(err));
	}
}

module.exports = { forward, hold, release, flush };
