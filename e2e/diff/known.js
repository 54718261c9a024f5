// Every difference the differential suite tolerates, by name and with the reason. A difference that
// no entry matches fails the run, and so does any leak (ours delivered what PocketBase did not)
// unless KNOWN_FAILURES names it. Kinds: "less" (PocketBase delivered, ours did not), "leak",
// "payload" (both delivered, different JSON), "dup" (different number of copies), "refused" (our
// config load refused a rule PocketBase accepted), "event-refused" (our admin API refused an event).
//
// A matcher gets the difference: {kind, rule (the list or view rule guarding the topic), filter,
// topic, identity, user (auth record or null), action, record (the event's record), pb, ours}.

/** Reads of a related record's fields (`author.plan`); `author.id` is the relation itself. */
export const RELATION_EXPANSION = /(^|[^@.\w])(author|members)\.(?!id\b)\w/;

/** Deliberate, documented differences: ours delivers less, never more. */
export const EXPECTED = [
	{
		category: "relation-expansion",
		kinds: ["less", "refused", "event-refused"],
		reason: "PocketBase joins the related users row for `author.plan`; ours has no database and fails closed (README: relations are not expanded)",
		match: (d) => RELATION_EXPANSION.test(d.rule ?? "") || RELATION_EXPANSION.test(d.filter ?? ""),
	},
	{
		category: "auth-email-hidden",
		kinds: ["payload"],
		reason: "PocketBase hides an auth record's `email` from other users unless emailVisibility is on; ours sends the record as the backend posted it (the superuser export, with email)",
		match: (d) => d.record?.collectionName === "users" && onlyKeysDiffer(d.pb, d.ours, ["email"]),
	},
];

/**
 * Bugs in our Go code found by this suite, tolerated (and printed) until fixed. Each entry names the
 * bug and how to reproduce it. DIFF_STRICT=1 fails on these too.
 */
export const KNOWN_FAILURES = [];

export function onlyKeysDiffer(a, b, keys) {
	if (!a || !b) return false;
	const all = new Set([...Object.keys(a), ...Object.keys(b)]);
	let differs = false;
	for (const k of all) {
		if (JSON.stringify(a[k]) === JSON.stringify(b[k])) continue;
		if (!keys.includes(k)) return false;
		differs = true;
	}
	return differs;
}

/** The category of a difference: {category, reason, known: "expected"|"failure"} or null (unlisted). */
export function classify(d) {
	for (const e of EXPECTED) if (e.kinds.includes(d.kind) && e.match(d)) return { category: e.category, reason: e.reason, known: "expected" };
	for (const e of KNOWN_FAILURES) if (e.kinds.includes(d.kind) && e.match(d)) return { category: e.category, reason: e.reason, known: "failure" };
	return null;
}
