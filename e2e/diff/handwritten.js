// Hand-written differential cases: the rule shapes real sites use and the corners where SQL and an
// in-memory evaluator part ways. `U` is the list of users (see gen.js makeUsers: U[0] pro/acme,
// U[1] free/acme with a visible email, U[2] team/globex banned unverified, U[3] free with no org).
import { pbDate } from "./schema.js";

const DAY = 24 * 3600 * 1000;

/**
 * name, list rule, view rule (undefined = same as list; null = superusers only), records (field
 * objects, created in order), updates [[recordIndex, changes]], del (index or undefined), filters.
 */
function hw(name, listRule, { view, records, updates = [], del, filters = [] }) {
	return { name, listRule, viewRule: view === undefined ? listRule : view, records, updates, del, filters };
}

export function handwrittenCases(U) {
	const past = pbDate(-3 * DAY);
	const future = pbDate(3 * DAY);
	const owned = (extra = {}) => [
		{ title: "u0's", author: U[0].id, ...extra },
		{ title: "u1's", author: U[1].id, ...extra },
		{ title: "nobody's", author: "", ...extra },
	];
	const cases = [
		// Owner rules, including PocketBase's guest quirk (empty author = empty auth id).
		hw("owner", "author = @request.auth.id", { records: owned(), updates: [[0, { title: "u0's edited" }], [2, { author: U[2].id }]], del: 1 }),
		hw("owner-reversed", "@request.auth.id = author", { records: owned() }),
		hw("owner-and-signed-in", "@request.auth.id != '' && author = @request.auth.id", { records: owned(), del: 2 }),
		hw("signed-in", "@request.auth.id != ''", { records: owned() }),
		hw("guests-only", "@request.auth.id = ''", { records: owned() }),
		hw("owner-list-open-view", "author = @request.auth.id", { view: "", records: owned() }),
		hw("superusers-only-list", null, { view: "author = @request.auth.id", records: owned() }),
		// Relations with any-of.
		hw("members-id-anyof", "members.id ?= @request.auth.id", {
			records: [{ members: [U[0].id, U[1].id] }, { members: [] }, { members: [U[2].id] }],
			updates: [[1, { members: [U[3].id] }], [0, { members: [U[1].id] }]],
			del: 2,
		}),
		hw("members-anyof", "members ?= @request.auth.id", { records: [{ members: [U[0].id, U[1].id] }, { members: [] }, { members: [U[2].id] }] }),
		hw("members-all-eq", "members = @request.auth.id", { records: [{ members: [U[0].id] }, { members: [U[0].id, U[1].id] }, { members: [] }] }),
		hw("members-not-anyof", "members ?!= @request.auth.id", { records: [{ members: [U[0].id] }, { members: [U[0].id, U[1].id] }, { members: [] }] }),
		hw("author-or-member", "author = @request.auth.id || members ?= @request.auth.id", {
			records: [{ author: U[0].id, members: [U[1].id] }, { author: "", members: [] }, { author: U[2].id, members: [U[3].id, U[0].id] }],
		}),
		// Dates against macros.
		hw("due-future", "due > @now", { records: [{ due: past }, { due: future }, { due: "" }], updates: [[0, { due: future }], [1, { due: past }]] }),
		hw("due-past", "due < @now", { records: [{ due: past }, { due: future }, { due: "" }] }),
		hw("due-today-window", "due >= @todayStart && due <= @todayEnd", { records: [{ due: pbDate(0) }, { due: future }, { due: "" }] }),
		hw("due-empty", "due = ''", { records: [{ due: past }, { due: "" }] }),
		hw("created-recent", "created > @yesterday && updated <= @now", { records: [{ title: "a" }, { title: "b" }] }),
		hw("due-vs-auth-created", "due > @request.auth.created", { records: [{ due: past }, { due: future }, { due: pbDate(-400 * DAY) }] }),
		// Booleans.
		hw("flag-true", "flag = true", { records: [{ flag: true }, { flag: false }, {}], updates: [[1, { flag: true }]] }),
		hw("flag-not-false", "flag != false", { records: [{ flag: true }, { flag: false }] }),
		hw("not-banned", "@request.auth.banned = false", { records: [{ title: "x" }, { title: "y" }] }),
		hw("not-banned-neq", "@request.auth.banned != true", { records: [{ title: "x" }] }),
		hw("verified", "@request.auth.verified = true", { records: [{ title: "x" }] }),
		// Selects.
		hw("status-published", "status = 'published'", {
			records: [{ status: "published" }, { status: "draft" }, { status: "" }],
			updates: [[1, { status: "published" }], [0, { status: "archived" }]],
			del: 1,
		}),
		hw("status-in", "status = 'published' || status = 'archived'", { records: [{ status: "published" }, { status: "draft" }, { status: "archived" }] }),
		hw("tags-anyof", "tags ?= 'a'", { records: [{ tags: ["a", "b"] }, { tags: ["b"] }, { tags: [] }] }),
		hw("tags-eq", "tags = 'a'", { records: [{ tags: ["a"] }, { tags: ["a", "b"] }, { tags: [] }] }),
		hw("tags-neq", "tags != 'a'", { records: [{ tags: ["a"] }, { tags: ["a", "b"] }, { tags: ["b"] }, { tags: [] }] }),
		hw("tags-each", "tags:each ?= 'a'", { records: [{ tags: ["a"] }, { tags: ["a", "b"] }, { tags: [] }] }),
		hw("tags-underscore", "tags ?= 'd_e'", { records: [{ tags: ["d_e"] }, { tags: ["a"] }] }),
		hw("roles-admin", "@request.auth.roles ?= 'admin'", { records: [{ title: "x" }] }),
		// Auth fields.
		hw("auth-plan-pro", "@request.auth.plan = 'pro'", { records: [{ title: "x" }, { title: "y" }], updates: [[0, { title: "x2" }]], del: 1 }),
		hw("auth-plan-not-free", "@request.auth.plan != 'free'", { records: [{ title: "x" }] }),
		hw("auth-org-match", "meta.org = @request.auth.org", { records: [{ meta: { org: "acme" } }, { meta: { org: "globex" } }, { meta: { org: "" } }, { meta: null }] }),
		hw("auth-level", "n <= @request.auth.level", { records: [{ n: 0 }, { n: 5 }, { n: 100 }] }),
		hw("published-or-own", "status = 'published' || author = @request.auth.id", {
			records: [{ status: "published", author: U[1].id }, { status: "draft", author: U[0].id }, { status: "draft", author: "" }, { status: "draft", author: U[1].id }],
			updates: [[1, { status: "published" }], [3, { author: U[2].id }]],
			del: 0,
		}),
		hw("published-and-pro", "status = 'published' && @request.auth.plan = 'pro'", { records: [{ status: "published" }, { status: "draft" }] }),
		// Empty multi-value fields against ''.
		hw("tags-empty", "tags = ''", { records: [{ tags: [] }, { tags: ["a"] }] }),
		hw("tags-not-empty", "tags != ''", { records: [{ tags: [] }, { tags: ["a"] }] }),
		hw("tags-empty-array-text", "tags = '[]'", { records: [{ tags: [] }, { tags: ["a"] }] }),
		hw("members-empty", "members = ''", { records: [{ members: [] }, { members: [U[0].id] }] }),
		hw("members-not-empty", "members != ''", { records: [{ members: [] }, { members: [U[0].id] }] }),
		hw("author-empty", "author = ''", { records: [{ author: "" }, { author: U[0].id }] }),
		hw("author-null", "author = null", { records: [{ author: "" }, { author: U[0].id }] }),
		hw("title-null", "title != null", { records: [{ title: "" }, { title: "x" }] }),
		// Numeric text against number literals.
		hw("code-eq-10", "code = 10", { records: [{ code: "10" }, { code: "10.0" }, { code: "abc" }] }),
		hw("code-eq-10-text", "code = '10'", { records: [{ code: "10" }, { code: "10.0" }] }),
		hw("code-gt-5", "code > 5", { records: [{ code: "10" }, { code: "5" }, { code: "007" }, { code: "abc" }, { code: "" }] }),
		hw("code-neq-0", "code != 0", { records: [{ code: "0" }, { code: "" }, { code: "1" }] }),
		hw("n-eq-text", "n = '5'", { records: [{ n: 5 }, { n: 0 }] }),
		hw("n-gt", "n > 2", { records: [{ n: 5 }, { n: 0 }, { n: 2.5 }, { n: -3 }] }),
		hw("n-zero", "n = 0", { records: [{ n: 0 }, {}, { n: 1 }] }),
		// :isset and :length.
		hw("auth-plan-isset", "@request.auth.plan:isset = true", { records: [{ title: "x" }] }),
		hw("auth-id-isset", "@request.auth.id:isset = true", { records: [{ title: "x" }] }),
		hw("query-isset", "@request.query.x:isset = false", { records: [{ title: "x" }] }),
		hw("tags-length", "tags:length > 1", { records: [{ tags: ["a", "b"] }, { tags: ["a"] }, { tags: [] }] }),
		hw("members-length-zero", "members:length = 0", { records: [{ members: [] }, { members: [U[0].id] }] }),
		hw("title-length", "title:length > 2", { records: [{ title: "ab" }, { title: "abcd" }] }),
		hw("auth-roles-length", "@request.auth.roles:length > 0", { records: [{ title: "x" }] }),
		// LIKE with % and _.
		hw("like-percent", "title ~ '50%'", { records: [{ title: "50% off" }, { title: "500 off" }, { title: "50" }] }),
		hw("like-underscore", "title ~ 'a_b'", { records: [{ title: "a_b" }, { title: "axb" }, { title: "xa_bx" }] }),
		hw("like-leading-percent", "title ~ '%b'", { records: [{ title: "a_b" }, { title: "bcd" }, { title: "abc" }] }),
		hw("not-like-underscore", "title !~ '_'", { records: [{ title: "a_b" }, { title: "ab" }, { title: "" }] }),
		hw("like-auth-org", "title ~ @request.auth.org", { records: [{ title: "acme inc" }, { title: "globex" }, { title: "" }] }),
		hw("like-case", "title ~ 'hello'", { records: [{ title: "HELLO" }, { title: "Hello World" }, { title: "x" }] }),
		hw("lower", "title:lower = 'hello'", { records: [{ title: "HELLO" }, { title: "Hello" }, { title: "hello!" }] }),
		hw("tags-like", "tags ~ 'd'", { records: [{ tags: ["d_e"] }, { tags: ["a"] }, { tags: [] }] }),
		hw("tags-like-empty", "tags ~ ''", { records: [{ tags: [] }, { tags: ["a"] }] }),
		// JSON paths.
		hw("json-owner", "meta.owner = @request.auth.id", {
			records: [{ meta: { owner: U[0].id } }, { meta: { owner: "" } }, { meta: {} }, { meta: null }],
			updates: [[1, { meta: { owner: U[1].id } }]],
		}),
		hw("json-level", "meta.level > 3", { records: [{ meta: { level: 5 } }, { meta: { level: 1 } }, { meta: { level: "10" } }, { meta: {} }] }),
		hw("json-nested", "meta.nested.k = 'v'", { records: [{ meta: { nested: { k: "v" } } }, { meta: { nested: { k: "w" } } }, { meta: { nested: "v" } }] }),
		hw("json-index", "meta.tags.0 = 'a'", { records: [{ meta: { tags: ["a", "b"] } }, { meta: { tags: ["b", "a"] } }, { meta: { tags: [] } }] }),
		hw("json-array-anyof", "meta.tags ?= 'a'", { records: [{ meta: { tags: ["a", "b"] } }, { meta: { tags: ["b"] } }, { meta: {} }] }),
		hw("json-flag", "meta.flag = true", { records: [{ meta: { flag: true } }, { meta: { flag: false } }, { meta: { flag: "true" } }] }),
		hw("json-null", "meta.owner = null", { records: [{ meta: { owner: U[0].id } }, { meta: {} }, { meta: null }, { meta: { owner: "" } }] }),
		hw("json-shares-array", "meta.shares.user ?= @request.auth.id", { records: [{ meta: { shares: [{ user: U[0].id }] } }, { meta: { shares: { user: U[0].id } } }] }),
		hw("json-whole", "meta = ''", { records: [{ meta: null }, { meta: {} }, { meta: { a: 1 } }, { meta: "" }] }),
		// Relation expansion: PocketBase joins the related user; ours has no database (fails closed).
		hw("expand-author-plan", "author.plan = 'pro'", { records: [{ author: U[0].id }, { author: U[1].id }, { author: "" }] }),
		hw("expand-members-org", "members.org ?= 'acme'", { records: [{ members: [U[0].id] }, { members: [U[2].id] }] }),
		// Subscription filters (options.filter) on top of rules.
		hw("filter-on-open", "", { records: [{ status: "published", n: 5 }, { status: "draft", n: 1 }], filters: ["status = 'published'", "n > 2"], updates: [[1, { status: "published" }]] }),
		hw("filter-on-owner", "author = @request.auth.id", { records: owned({ n: 3 }), filters: ["n = 3", "title ~ 'u0'"] }),
		hw("filter-with-request", "", { records: [{ title: "x" }], filters: ["@request.auth.id != ''", "title = '@request.auth.id'"] }),
		hw("filter-bad-field", "", { records: [{ title: "x" }], filters: ["nope = 1"] }),
		// A relation path in a subscription filter joins the related collection with the subscriber's
		// access to it (users rule: self or same org); the relation's own value does not.
		hw("filter-relation-path-hidden-user", "", {
			records: [{ members: [U[2].id] }, { members: [U[0].id, U[2].id] }, { author: U[2].id }],
			filters: [`members.id ?= '${U[2].id}'`, `members ?= '${U[2].id}'`, `author.id = '${U[2].id}'`, `author = '${U[2].id}'`],
		}),
		hw("rule-relation-path-literal", `members.id ?= '${U[2].id}'`, { records: [{ members: [U[2].id] }, { members: [U[0].id] }] }),
		// One comparison ours cannot decide, or'ed with one that holds: PocketBase allows.
		hw("undecidable-or-true", "author.plan = 'pro' || title = 'x'", { records: [{ author: U[1].id, title: "x" }, { author: U[0].id, title: "y" }] }),
		hw("json-missing-or-true", "meta.nested.k != 'q' || status = 'published'", { records: [{ meta: null, status: "published" }, { meta: { nested: { k: "q" } }, status: "draft" }] }),
		// Constants and the request.
		hw("context", "@request.context = 'realtime' && @request.method = 'GET'", { records: [{ title: "x" }] }),
		hw("everyone", "", { records: [{ title: "x" }], updates: [[0, { title: "y" }]], del: 0 }),
		hw("collection-name", "@request.auth.collectionName = 'users'", { records: [{ title: "x" }] }),
		hw("id-eq", "id = @request.auth.id", { records: [{ title: "x" }] }),
	];
	return cases.map((c) => {
		const ops = [];
		c.records.forEach((fields, i) => ops.push({ action: "create", rec: i, fields }));
		for (const [i, changes] of c.updates) ops.push({ action: "update", rec: i, fields: changes });
		if (c.del !== undefined) ops.push({ action: "delete", rec: c.del });
		return { name: `hw-${c.name}`, listRule: c.listRule, viewRule: c.viewRule, records: c.records.map((_, i) => null), ops, filters: c.filters };
	});
}

/**
 * The auth round: users change while subscribed. PocketBase refreshes a client's auth record when its
 * users row is updated (a ban or a plan change takes effect at once); ours does so when the users
 * update event is posted. Phases: create records; change users; update every record; revert users;
 * update every record again; delete. Every identity also subscribes to users/* and users/ID, which
 * shows PocketBase hiding `email` (emailVisibility off) from other users of the same org.
 */
export function authRound(U) {
	const cases = [
		hw("auth-change-plan", "@request.auth.plan = 'pro'", { records: [{ title: "x" }] }),
		hw("auth-change-banned", "@request.auth.id != '' && @request.auth.banned = false", { records: [{ title: "x" }] }),
		hw("auth-change-org", "meta.org = @request.auth.org", { records: [{ meta: { org: "acme" } }, { meta: { org: "globex" } }] }),
		hw("auth-change-owner-not-banned", "author = @request.auth.id && @request.auth.banned != true", { records: [{ author: U[0].id }, { author: U[2].id }] }),
	].map((c) => ({ name: `hw-${c.name}`, listRule: c.listRule, viewRule: c.viewRule, records: c.records.map(() => null), fields: c.records, filters: [] }));
	const changes = [
		[1, { plan: "pro" }],
		[0, { banned: true }],
		[2, { banned: false, org: "acme" }],
		[3, { org: "acme", emailVisibility: true }],
	];
	const revert = changes.map(([i, ch]) => [i, Object.fromEntries(Object.keys(ch).map((k) => [k, U[i][k]]))]);
	let n = 0;
	const userSteps = (list) => list.map(([i, ch]) => ({ user: U[i], changes: ch, tag: `users#${n++}` }));
	const recordSteps = (live, action, fieldsFor) =>
		live.map((c) => c.fields.map((f, i) => ({ c, op: { action, rec: i, fields: fieldsFor(f, i) }, tag: `${c.name}#${n++}` })));
	return {
		cases,
		userTopics: true,
		phases: (live) => [
			recordSteps(live, "create", (f) => f),
			[userSteps(changes)],
			recordSteps(live, "update", () => ({ title: "after change" })),
			[userSteps(revert)],
			recordSteps(live, "update", () => ({ title: "after revert" })),
			recordSteps(live, "delete", () => undefined),
		],
	};
}
