// The fixed schema of the differential suite: the fields of every case collection, the extra fields
// of the `users` auth collection, and the pools random values and literals are drawn from.
// PocketBase gets these as real field types; our Caddy gets the records as PocketBase exports them.

export const USERS_COLLECTION_ID = "_pb_users_auth_";

/** Extra fields added to PocketBase's default `users` auth collection. */
export const USER_FIELDS = [
	{ name: "plan", type: "select", values: ["free", "pro", "team"], maxSelect: 1 },
	{ name: "banned", type: "bool" },
	{ name: "org", type: "text" },
	{ name: "level", type: "number" },
	{ name: "roles", type: "select", values: ["admin", "editor", "viewer"], maxSelect: 3 },
	{ name: "evt", type: "text" }, // the differential event tag (never in a rule)
];

/**
 * The `users` rules, fixed for the whole run (PocketBase's default is `id = @request.auth.id`).
 * Others see a user of their own non-empty org: that shows PocketBase hiding `email` (emailVisibility).
 */
export const USERS_RULE = "id = @request.auth.id || (org != '' && org = @request.auth.org)";

/** Fields of every case collection. `evt` tags each event so deliveries can be matched across servers. */
export const CASE_FIELDS = [
	{ name: "title", type: "text" },
	{ name: "code", type: "text" },
	{ name: "n", type: "number" },
	{ name: "flag", type: "bool" },
	{ name: "status", type: "select", values: ["draft", "published", "archived"], maxSelect: 1 },
	{ name: "tags", type: "select", values: ["a", "b", "c", "d_e"], maxSelect: 4 },
	{ name: "author", type: "relation", collectionId: USERS_COLLECTION_ID, maxSelect: 1 },
	{ name: "members", type: "relation", collectionId: USERS_COLLECTION_ID, maxSelect: 10 },
	{ name: "meta", type: "json" },
	{ name: "due", type: "date" },
	{ name: "contact", type: "email" },
	{ name: "evt", type: "text" },
	{ name: "created", type: "autodate", onCreate: true, onUpdate: false },
	{ name: "updated", type: "autodate", onCreate: true, onUpdate: true },
];

/** PocketBase's field definitions (POST/PATCH /api/collections) for a list of our field specs. */
export function pbFields(fields) {
	return fields.map((f) => {
		switch (f.type) {
			case "select":
				return { name: f.name, type: "select", values: f.values, maxSelect: f.maxSelect };
			case "relation":
				return { name: f.name, type: "relation", collectionId: f.collectionId, maxSelect: f.maxSelect, cascadeDelete: false };
			case "autodate":
				return { name: f.name, type: "autodate", onCreate: f.onCreate, onUpdate: f.onUpdate };
			case "json":
				return { name: f.name, type: "json", maxSize: 0 };
			default:
				return { name: f.name, type: f.type };
		}
	});
}

// Value pools. Texts hold the characters LIKE cares about (% and _), numeric-looking texts, and words
// that also appear as user attributes, so that field-vs-auth comparisons are sometimes true.
export const POOLS = {
	title: ["", "hello", "Hello World", "50% off", "a_b", "abc", "x_y%z", "pro", "acme", "HELLO"],
	code: ["", "0", "10", "5", "abc", "10.0", "-3", "007", "1e3"],
	n: [0, 1, 5, 10, -3, 2.5, 100],
	status: ["", "draft", "published", "archived"],
	tags: ["a", "b", "c", "d_e"],
	contact: ["", "someone@example.com", "pro@acme.io"],
	org: ["", "acme", "globex"],
	name: ["", "ann", "bob", "pro", "Acme"],
	level: [0, 1, 5, 10],
	roles: ["admin", "editor", "viewer"],
	plan: ["free", "pro", "team"],
};

const DAY = 24 * 3600 * 1000;

/** A PocketBase datetime string `YYYY-MM-DD HH:MM:SS.000Z` for now + offsetMs (never near a boundary). */
export function pbDate(offsetMs) {
	const d = new Date(Date.now() + offsetMs);
	d.setUTCMilliseconds(0);
	return d.toISOString().replace("T", " ");
}

/** Date offsets far from now and from today's and this month's boundaries by at least hours. */
export const DATE_OFFSETS = [-400 * DAY, -40 * DAY, -3 * DAY, 3 * DAY, 40 * DAY, 400 * DAY];
