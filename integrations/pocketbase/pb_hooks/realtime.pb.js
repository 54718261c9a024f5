/// <reference path="../pb_data/types.d.ts" />
// Forwards every record create, update and delete to caddy-realtime's admin API
// (POST /realtime/events), so Caddy nodes serve PocketBase's realtime.
// Copy this file and realtime.js into pb_hooks/. Configuration (environment):
//   REALTIME_ADMIN_URL         Caddy's admin endpoint, default http://127.0.0.1:2019
//                              (several, comma-separated: each gets every event)
//   REALTIME_BROKER            the realtime broker, default "default"
//   REALTIME_SKIP_COLLECTIONS  collections not forwarded, comma-separated
//   REALTIME_TIMEOUT           seconds one POST may take, default 2
//   REALTIME_QUEUE_MAX         events kept while Caddy is unreachable, default 10000
//   REALTIME_RETRY_FOR         seconds an event is retried before it is dropped, default 600
//   REALTIME_MAX_EVENT_BYTES   a larger event is refused with a log line, default 900000
//
// PocketBase runs each handler in its own pooled VM from its source text: the
// handlers cannot share variables with this file, so the work is in realtime.js
// (require caches it per VM) and the queue lives in $app.store().

onRecordAfterCreateSuccess((e) => {
	require(`${__hooks}/realtime.js`).forward(e, "create");
	e.next();
});

onRecordAfterUpdateSuccess((e) => {
	require(`${__hooks}/realtime.js`).forward(e, "update");
	e.next();
});

onRecordAfterDeleteSuccess((e) => {
	require(`${__hooks}/realtime.js`).forward(e, "delete");
	e.next();
});

// A batch request's records are sent together once the batch has committed.
onBatchRequest((e) => {
	const realtime = require(`${__hooks}/realtime.js`);
	realtime.hold(e.app);
	try {
		e.next();
	} finally {
		realtime.release(e.app);
	}
});

// Retries what is still queued when no new record change comes to carry it.
cronAdd("caddyRealtimeRetry", "* * * * *", () => {
	require(`${__hooks}/realtime.js`).flush($app);
});
