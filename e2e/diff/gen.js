// Seeded generation of users, records, rules and operations for the differential suite.
// Everything here is a pure function of the seed, so a failing case can be replayed with DIFF_SEED.
import { POOLS, DATE_OFFSETS, pbDate } from "./schema.js";

/** mulberry32: a small, fast, seedable PRNG. */
export function rng(seed) {
	let a = seed >>> 0;
	const next = () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	const r = {
		next,
		int: (n) => Math.floor(next() * n),
		chance: (p) => next() < p,
		pick: (list) => list[Math.floor(next() * list.length)],
		subset: (list, max = list.length) => {
			const out = list.filter(() => next() < 0.4);
			return out.slice(0, max);
		},
		id: (prefix = "") => {
			const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
			let s = prefix;
			while (s.length < 15) s += abc[Math.floor(next() * abc.length)];
			return s;
		},
	};
	return r;
}

// ---------------------------------------------------------------------------------------------
// Users

/**
 * Six users with varied attributes (at least one of each plan, one banned, orgs shared by two users),
 * created in PocketBase with these ids. Index 0..5; the guest is not a user.
 */
export function makeUsers(r) {
	const fixed = [
		{ plan: "pro", banned: false, org: "acme", verified: true, emailVisibility: false },
		{ plan: "free", banned: false, org: "acme", verified: true, emailVisibility: true },
		{ plan: "team", banned: true, org: "globex", verified: false, emailVisibility: false },
		{ plan: "free", banned: false, org: "", verified: true, emailVisibility: false },
	];
	const users = [];
	for (let i = 0; i < 6; i++) {
		const base = fixed[i] ?? {
			plan: r.pick(POOLS.plan),
			banned: r.chance(0.3),
			org: r.pick(POOLS.org),
			verified: r.chance(0.6),
			emailVisibility: r.chance(0.5),
		};
		users.push({
			id: r.id(`u${i}`),
			email: `user${i}@example.com`,
			name: r.pick(POOLS.name),
			level: r.pick(POOLS.level),
			roles: r.subset(POOLS.roles),
			evt: "",
			...base,
		});
	}
	return users;
}

// ---------------------------------------------------------------------------------------------
// Records

function randomMeta(r, users) {
	switch (r.int(6)) {
		case 0:
			return null;
		case 1:
			return {};
		case 2:
			return r.pick([[1, 2], "text", 5, true]);
		default: {
			const m = {};
			if (r.chance(0.6)) m.owner = r.chance(0.8) ? r.pick(users).id : "";
			if (r.chance(0.6)) m.level = r.pick(POOLS.n);
			if (r.chance(0.5)) m.tags = r.subset(POOLS.tags);
			if (r.chance(0.5)) m.nested = { k: r.pick(["v", "w", ""]) };
			if (r.chance(0.3)) m.flag = r.chance(0.5);
			if (r.chance(0.3)) m.title = r.pick(POOLS.title);
			return m;
		}
	}
}

const FIELD_GEN = {
	title: (r) => r.pick(POOLS.title),
	code: (r) => r.pick(POOLS.code),
	n: (r) => r.pick(POOLS.n),
	flag: (r) => r.chance(0.5),
	status: (r) => r.pick(POOLS.status),
	tags: (r) => r.subset(POOLS.tags),
	author: (r, users) => (r.chance(0.75) ? r.pick(users).id : ""),
	members: (r, users) => r.subset(users.map((u) => u.id), 3),
	meta: (r, users) => randomMeta(r, users),
	due: (r) => (r.chance(0.2) ? "" : pbDate(r.pick(DATE_OFFSETS))),
	contact: (r) => r.pick(POOLS.contact),
};

export function randomRecord(r, users) {
	const rec = {};
	for (const [name, gen] of Object.entries(FIELD_GEN)) rec[name] = gen(r, users);
	return rec;
}

/** A few random field changes for an update. */
export function randomChanges(r, users) {
	const names = Object.keys(FIELD_GEN);
	const out = {};
	const k = 1 + r.int(3);
	for (let i = 0; i < k; i++) {
		const name = r.pick(names);
		out[name] = FIELD_GEN[name](r, users);
	}
	return out;
}

// ---------------------------------------------------------------------------------------------
// Rules: a small grammar over the fixed schema.

const q = (r, s) => {
	if (r.chance(0.5) && !s.includes("'")) return `'${s}'`;
	return `"${s.replaceAll('"', '\\"')}"`;
};
const num = (x) => String(x);

const CMP = ["=", "!=", ">", ">=", "<", "<="];
const LIKE = ["~", "!~"];
const ANY = ["?=", "?!=", "?>", "?>=", "?<", "?<=", "?~", "?!~"];
const EQ = ["=", "!="];
const ALL_OPS = [...CMP, ...LIKE, ...ANY];

const AUTH_FIELDS = {
	id: "id",
	plan: "text",
	org: "text",
	name: "text",
	email: "text",
	level: "number",
	banned: "bool",
	verified: "bool",
	emailVisibility: "bool",
	roles: "multi",
	collectionName: "text",
	created: "date",
};

// Literal pools per value kind; sometimes a literal of another kind (cross-type comparisons).
function literal(r, kind, users) {
	switch (kind) {
		case "text":
			return q(r, r.pick([...POOLS.title, ...POOLS.code, ...POOLS.org, "%", "_", "%a%", "h_llo", "acme%"]));
		case "number":
			return num(r.pick([...POOLS.n, 3, -1]));
		case "bool":
			return r.pick(["true", "false"]);
		case "status":
			return q(r, r.pick(POOLS.status));
		case "tag":
			return q(r, r.pick([...POOLS.tags, "", "[]", "d%", "a,b"]));
		case "id":
			return q(r, r.chance(0.8) ? r.pick(users).id : "");
		case "date":
			return r.chance(0.6)
				? r.pick(["@now", "@yesterday", "@tomorrow", "@todayStart", "@todayEnd", "@monthStart", "@monthEnd", "@yearStart", "@yearEnd"])
				: q(r, r.chance(0.2) ? "" : pbDate(r.pick(DATE_OFFSETS)));
		case "autodate":
			// created/updated are set a moment before PocketBase checks the rule and long before ours
			// does: never compare them with @now (a race, not a difference).
			return r.chance(0.6)
				? r.pick(["@yesterday", "@tomorrow", "@monthStart", "@yearStart", "@yearEnd"])
				: q(r, r.chance(0.2) ? "" : pbDate(r.pick(DATE_OFFSETS)));
		case "role":
			return q(r, r.pick([...POOLS.roles, ""]));
		case "plan":
			return q(r, r.pick([...POOLS.plan, ""]));
		default:
			return "null";
	}
}

function anyLiteral(r, users) {
	if (r.chance(0.08)) return "null";
	return literal(r, r.pick(["text", "number", "bool", "status", "tag", "id", "date"]), users);
}

/** Operators fitting a kind; 15% of the time any operator at all. */
function op(r, kind) {
	if (r.chance(0.15)) return r.pick(ALL_OPS);
	switch (kind) {
		case "multi":
			return r.pick([...ANY, ...ANY, "=", "!=", "~", "!~"]);
		case "bool":
		case "id":
			return r.pick([...EQ, ...EQ, "?="]);
		case "number":
		case "date":
			return r.pick(CMP);
		default:
			return r.pick([...CMP, ...LIKE, ...LIKE]);
	}
}

function authOperand(r) {
	const name = r.pick(Object.keys(AUTH_FIELDS));
	return { text: `@request.auth.${name}`, kind: AUTH_FIELDS[name], name };
}

function authLiteralKind(name) {
	return { plan: "plan", roles: "role", banned: "bool", verified: "bool", emailVisibility: "bool", level: "number", id: "id", created: "date", collectionName: "text" }[name] ?? "text";
}

// Record operands: [text, kind, literal kind].
const RECORD_OPERANDS = [
	["title", "text", "text"],
	["code", "text", "number"],
	["code", "text", "text"],
	["n", "number", "number"],
	["flag", "bool", "bool"],
	["status", "text", "status"],
	["tags", "multi", "tag"],
	["author", "id", "id"],
	["author.id", "id", "id"],
	["members", "multi", "id"],
	["members.id", "multi", "id"],
	["due", "date", "date"],
	["created", "date", "autodate"],
	["updated", "date", "autodate"],
	["contact", "text", "text"],
	["id", "id", "id"],
	["meta", "text", "text"],
	["meta.owner", "id", "id"],
	["meta.level", "number", "number"],
	["meta.tags", "multi", "tag"],
	["meta.tags.0", "text", "tag"],
	["meta.nested.k", "text", "text"],
	["meta.flag", "bool", "bool"],
	["meta.title", "text", "text"],
	["title:lower", "text", "text"],
	["tags:length", "number", "number"],
	["members:length", "number", "number"],
	["tags:each", "text", "tag"],
];

// Reads of a related record (relation expansion): PocketBase joins users; ours fails closed.
const EXPANSIONS = [
	["author.plan", "text", "plan"],
	["author.org", "text", "text"],
	["author.banned", "bool", "bool"],
	["members.org", "multi", "text"],
	["author.name", "text", "text"],
];

// created/updated are set a moment before PocketBase checks the rule and long before ours does:
// comparing them with @now is a race (equal to the millisecond on PocketBase), not a difference.
const AUTODATE_VS_NOW = /(^|[^.\w])(created|updated)\b.*@now|@now.*(^|[^.\w])(created|updated)\b/;

function comparison(r, users) {
	for (;;) {
		const c = anyComparison(r, users);
		if (!AUTODATE_VS_NOW.test(c)) return c;
	}
}

function anyComparison(r, users) {
	const shape = r.int(100);
	if (shape < 45) {
		// record field vs literal
		const [f, kind, lit] = r.pick(RECORD_OPERANDS);
		const rhs = r.chance(0.85) ? literal(r, lit, users) : anyLiteral(r, users);
		return `${f} ${op(r, kind)} ${rhs}`;
	}
	if (shape < 70) {
		// record field vs @request.auth.*
		const pairs = [
			["author", "id", "@request.auth.id"],
			["members", "multi", "@request.auth.id"],
			["members.id", "multi", "@request.auth.id"],
			["meta.owner", "id", "@request.auth.id"],
			["id", "id", "@request.auth.id"],
			["title", "text", "@request.auth.org"],
			["title", "text", "@request.auth.name"],
			["code", "text", "@request.auth.level"],
			["n", "number", "@request.auth.level"],
			["flag", "bool", "@request.auth.banned"],
			["flag", "bool", "@request.auth.verified"],
			["status", "text", "@request.auth.plan"],
			["tags", "multi", "@request.auth.roles"],
			["contact", "text", "@request.auth.email"],
			["due", "date", "@request.auth.created"],
		];
		const [f, kind, a] = r.pick(pairs);
		const o = op(r, kind);
		return r.chance(0.3) ? `${a} ${o.startsWith("?") ? "=" : o} ${f}` : `${f} ${o} ${a}`;
	}
	if (shape < 88) {
		// @request.auth.* vs literal (or :isset)
		const a = authOperand(r);
		if (r.chance(0.12)) return `${a.text}:isset = ${r.pick(["true", "false"])}`;
		if (a.kind === "multi" && r.chance(0.3)) return `${a.text}:length ${r.pick(CMP)} ${r.pick([0, 1, 2])}`;
		return `${a.text} ${op(r, a.kind)} ${r.chance(0.85) ? literal(r, authLiteralKind(a.name), users) : anyLiteral(r, users)}`;
	}
	if (shape < 93) {
		// field vs field
		const [a, ka] = r.pick(RECORD_OPERANDS);
		const [b] = r.pick(RECORD_OPERANDS.filter(([, k]) => k === ka || r.chance(0.2)));
		return `${a} ${op(r, ka)} ${b}`;
	}
	if (shape < 97) {
		// the request itself, constants
		return r.pick([
			`@request.context = 'realtime'`,
			`@request.context != 'realtime'`,
			`@request.method = 'GET'`,
			`@request.query.x:isset = false`,
			`@request.auth.collectionName = 'users'`,
			`true = true`,
			`1 = 2`,
			`'a' ~ 'a'`,
			`null = ''`,
		]);
	}
	const [f, kind, lit] = r.pick(EXPANSIONS);
	return `${f} ${op(r, kind)} ${literal(r, lit, users)}`;
}

function expr(r, users, depth, atoms) {
	if (depth <= 0 || r.chance(0.4)) {
		const atom = comparison(r, users);
		atoms.push(atom);
		return atom;
	}
	const a = expr(r, users, depth - 1, atoms);
	const b = expr(r, users, depth - 1, atoms);
	const joined = `${a} ${r.chance(0.55) ? "&&" : "||"} ${b}`;
	return depth < 3 && r.chance(0.5) ? `(${joined})` : joined;
}

/** A random rule; its comparisons are pushed onto atoms (to shrink a differing case to one). */
export function randomRule(r, users, atoms = []) {
	return expr(r, users, 3, atoms);
}

/** A subscription filter a non-superuser may send (no @request: PocketBase refuses those). */
export function randomFilter(r, users) {
	const [f, kind, lit] = r.pick(RECORD_OPERANDS);
	return `${f} ${op(r, kind)} ${literal(r, lit, users)}`;
}

// ---------------------------------------------------------------------------------------------
// Cases

/**
 * A case: one collection with a list and a view rule (null = superusers only), records with fixed ids,
 * a sequence of ops, and optional subscription filters. Ops: {action, rec (index), fields}.
 */
export function randomCase(r, users, index) {
	const atoms = [];
	const listRule = r.chance(0.04) ? null : randomRule(r, users, atoms);
	const viewRule = r.chance(0.5) ? listRule : r.chance(0.04) ? null : randomRule(r, users, atoms);
	const nrec = 2 + r.int(2);
	const records = [];
	const ops = [];
	for (let i = 0; i < nrec; i++) {
		records.push(r.id(`r${i}`));
		ops.push({ action: "create", rec: i, fields: randomRecord(r, users) });
	}
	const nupd = 1 + r.int(3);
	for (let i = 0; i < nupd; i++) ops.push({ action: "update", rec: r.int(nrec), fields: randomChanges(r, users) });
	if (r.chance(0.7)) ops.push({ action: "delete", rec: r.int(nrec) });
	const filters = r.chance(0.3) ? [randomFilter(r, users)] : [];
	return { name: `gen-${index}`, listRule, viewRule, records, ops, filters, atoms: [...new Set(atoms)] };
}
