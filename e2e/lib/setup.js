// Node 20 has no global EventSource; the PocketBase SDK needs one.
import { EventSource } from "eventsource";

if (typeof globalThis.EventSource === "undefined") {
	globalThis.EventSource = EventSource;
}

export { EventSource };
