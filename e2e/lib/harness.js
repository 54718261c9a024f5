// Per-file lifecycle: one server per test file, SDK clients closed after each test.
import { before, after, afterEach } from "node:test";
import { startTarget } from "./targets.js";

export function useTarget() {
	const ctx = { target: null };
	before(async () => {
		ctx.target = await startTarget();
	}, { timeout: 90_000 });
	afterEach(async () => {
		await ctx.target?.closeClients();
	});
	after(async () => {
		await ctx.target?.stop();
	}, { timeout: 30_000 });
	return ctx;
}
