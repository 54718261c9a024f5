// caddy-realtime demo: the browser's own EventSource and fetch, no libraries.
//
// Protocol (PocketBase realtime): GET /api/realtime opens the stream and sends PB_CONNECT with our
// clientId; we POST {clientId, subscriptions} to choose topics; each event then arrives named after
// the exact topic it matched. After a reconnect the server issues a new clientId and has forgotten
// our topics, so every PB_CONNECT re-sends them.
"use strict";

const ENDPOINT = "/api/realtime";
const ADMIN = "http://localhost:2019"; // Caddy's admin API, where a backend publishes
const MAX_ITEMS = 200; // the feed keeps the newest ones

const $ = (id) => document.getElementById(id);
const ui = {
	state: $("state"), stateLabel: $("state-label"), clientId: $("client-id"),
	form: $("sub-form"), input: $("sub-input"), status: $("sub-status"), error: $("sub-error"), active: $("sub-active"),
	feed: $("feed"), empty: $("feed-empty"), count: $("feed-count"),
};

let es = null; // the EventSource
let clientId = ""; // set by PB_CONNECT, cleared when the stream drops
let topics = parseTopics(ui.input.value); // what the server should hold for us
const listening = new Set(); // event names we have listeners for on `es`
let queue = Promise.resolve(); // subscription POSTs, one at a time and in order
let received = 0;

// --- connection ----------------------------------------------------------

function connect() {
	setState("connecting", "Connecting…");
	es = new EventSource(ENDPOINT);
	listening.clear();
	listen(topics);
	es.addEventListener("PB_CONNECT", (e) => {
		clientId = e.lastEventId || JSON.parse(e.data).clientId; // the SDK reads id: too
		setState("connected", "Connected", clientId);
		subscribe(topics);
	});
	es.onerror = (e) => {
		if (e instanceof MessageEvent) return; // a topic literally named "error"
		const lost = clientId !== "" || ui.state.dataset.state === "reconnecting";
		clientId = "";
		if (es.readyState === EventSource.CLOSED) {
			// Refused (not a 200 text/event-stream): the browser gives up, so we retry ourselves.
			setState("reconnecting", "Stream refused, retrying…");
			setTimeout(connect, 3000);
		} else if (lost) {
			setState("reconnecting", "Connection lost, reconnecting…");
		} // else: the first connect has not succeeded yet and the browser keeps trying
	};
}

function setState(state, label, id = "") {
	ui.state.dataset.state = state;
	ui.state.dataset.clientId = id;
	ui.stateLabel.textContent = label;
	ui.clientId.textContent = id;
	ui.clientId.title = id ? "clientId" : "";
}

// Keeps exactly one listener per wanted event name on the current EventSource.
function listen(names) {
	for (const n of listening) {
		if (!names.includes(n)) { es.removeEventListener(n, onEvent); listening.delete(n); }
	}
	for (const n of names) {
		if (!listening.has(n)) { es.addEventListener(n, onEvent); listening.add(n); }
	}
}

// --- subscriptions -------------------------------------------------------

function parseTopics(text) {
	return [...new Set(text.split(/[,\n]/).map((t) => t.trim()).filter(Boolean))];
}

// POSTs the whole set (it replaces the previous one). Queued so responses cannot cross.
function subscribe(list) {
	const run = async () => {
		const id = clientId;
		if (!id) {
			topics = list; // PB_CONNECT will send them
			if (es) listen(topics);
			return setSub("pending", "Not connected: will subscribe on connect.");
		}
		setSub("pending", "Applying…");
		try {
			const res = await fetch(ENDPOINT, {
				method: "POST",
				headers: { "Content-Type": "application/json" },
				body: JSON.stringify({ clientId: id, subscriptions: list }),
			});
			if (!res.ok) throw new Error(await errorText(res));
			if (id !== clientId) return; // reconnected meanwhile; PB_CONNECT sends again
			topics = list;
			listen(topics);
			ui.status.dataset.clientId = id;
			setSub("applied", `Subscribed to ${list.length} topic${list.length === 1 ? "" : "s"}.`);
		} catch (err) {
			listen(topics); // drop listeners for topics the server refused
			setSub("error", "Not applied; the previous topics stay active.", err.message);
		}
	};
	return (queue = queue.then(run, run));
}

// PocketBase error body: {"data":{field:{code,message}|{index:{...}}},"message":"...","status":N}
async function errorText(res) {
	const body = await res.json().catch(() => null);
	if (!body) return `HTTP ${res.status} ${res.statusText}`;
	const details = [];
	const walk = (v, path) => {
		if (v && typeof v.message === "string") details.push(`${path}: ${v.message}`);
		else if (v && typeof v === "object") for (const [k, w] of Object.entries(v)) walk(w, path ? `${path}[${k}]` : k);
	};
	walk(body.data, "");
	return [`${body.message || body.error || "Request failed."} (${res.status})`, ...details].join("\n");
}

function setSub(state, text, error = "") {
	ui.status.dataset.state = state;
	ui.status.textContent = text;
	ui.error.textContent = error;
	ui.error.hidden = !error;
	renderTopics();
}

ui.form.addEventListener("submit", (e) => {
	e.preventDefault();
	const list = parseTopics(ui.input.value);
	if (es) listen([...new Set([...topics, ...list])]); // ready before the server starts sending
	subscribe(list);
});
ui.input.addEventListener("keydown", (e) => {
	if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ui.form.requestSubmit();
});

// --- feed ----------------------------------------------------------------

function onEvent(e) {
	if (!(e instanceof MessageEvent)) return;
	let data;
	try { data = JSON.parse(e.data); } catch { data = e.data; }
	const isRecord = data && typeof data === "object" && "record" in data && typeof data.action === "string";
	const action = isRecord ? data.action : "message";
	const body = isRecord ? data.record : data;
	const recordId = isRecord && data.record ? String(data.record.id ?? "") : "";

	received++;
	const item = el("li", { className: "item" },
		el("div", { className: "meta" },
			el("span", { className: `badge ${["create", "update", "delete"].includes(action) ? action : "message"}` }, action),
			el("code", { className: "topic", title: "topic" }, e.type),
			recordId ? el("span", { className: "rid", title: "record id" }, recordId) : "",
			el("time", { dateTime: new Date().toISOString() }, clock())),
		el("pre", { className: "json" }, ...highlight(body)));
	Object.assign(item.dataset, { testid: "feed-item", seq: received, topic: e.type, action, recordId });
	ui.feed.prepend(item);
	while (ui.feed.children.length > MAX_ITEMS) ui.feed.lastElementChild.remove();
	showCount();
}

// Compact JSON on a few wrapped lines, with keys, strings and literals in their own colors.
function highlight(value) {
	if (typeof value === "string") return [value]; // a custom message whose data was not JSON
	const text = JSON.stringify(value, null, 1).replace(/\n\s*/g, " "); // raw newlines only occur between tokens
	const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
	const out = [];
	let last = 0;
	for (const m of text.matchAll(token)) {
		out.push(text.slice(last, m.index));
		const kind = m[2] ? "key" : m[1] ? "str" : /^[tfn]/.test(m[0]) ? "lit" : "num";
		out.push(el("span", { className: `j-${kind}` }, m[1] ?? m[0]), m[2] ?? "");
		last = m.index + m[0].length;
	}
	out.push(text.slice(last));
	return out;
}

function showCount() {
	ui.count.textContent = received;
	ui.empty.hidden = ui.feed.children.length > 0;
}

$("feed-clear").addEventListener("click", () => {
	ui.feed.replaceChildren();
	received = 0;
	showCount();
});

function clock() {
	const d = new Date();
	const p = (n, w = 2) => String(n).padStart(w, "0");
	return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function el(tag, props, ...children) {
	const node = Object.assign(document.createElement(tag), props);
	node.append(...children);
	return node;
}

// --- commands to copy ----------------------------------------------------

const sampleId = Array.from(crypto.getRandomValues(new Uint8Array(15)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
const shellQuote = (s) => `'${s.replaceAll("'", `'\\''`)}'`;

function renderTopics() {
	ui.active.replaceChildren(...topics.map((t) => el("li", { className: "chip" }, t)));
	renderCommands();
}

function renderCommands() {
	// Target the first collection or record topic we are subscribed to, so the command shows up here.
	const topic = topics.find((t) => /^[^?*/]+\//.test(t)) || "posts/*";
	const [collection, rest = "*"] = topic.split("?")[0].split("/");
	const id = rest !== "*" ? rest : sampleId;
	const json = "-H 'Content-Type: application/json' \\\n  -d ";
	const event = { action: "create", record: { id, collectionName: collection, title: "Hello from curl" } };
	$("curl-publish").textContent = `curl -X POST ${ADMIN}/realtime/events \\\n  ${json}${shellQuote(JSON.stringify(event))}`;
	$("curl-message").textContent = `curl -X POST ${ADMIN}/realtime/messages \\\n  ${json}${shellQuote('{"name":"custom","data":{"hello":"world"}}')}`;
	$("curl-stream").textContent = `curl -N ${location.origin}${ENDPOINT}`;
}

document.addEventListener("click", async (e) => {
	const button = e.target.closest("button[data-copy]");
	if (!button) return;
	const text = $(button.dataset.copy).textContent;
	try {
		await navigator.clipboard.writeText(text);
	} catch {
		// Not a secure context (plain http on a LAN address): copy through a selection.
		const area = el("textarea", { value: text });
		document.body.append(area);
		area.select();
		document.execCommand("copy");
		area.remove();
	}
	button.textContent = "Copied";
	setTimeout(() => (button.textContent = "Copy"), 1200);
});

renderTopics();
connect();
