import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readHostNqn, type HostNqnRead } from "../../src/nvme/host-nqn.ts";
import { createRunner } from "../../src/runtime/exec.ts";

const NQN = "nqn.2014-08.org.nvmexpress:uuid:8f0c1c52-3c2e-4d1b-a7a5-2f6f8c4e9d10";
const dir = mkdtempSync(join(tmpdir(), "rds-hostnqn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const runner = createRunner();
const file = (name: string, content?: string) => {
  const p = join(dir, name);
  if (content !== undefined) writeFileSync(p, content);
  return p;
};

describe("readHostNqn", () => {
  test.each([
    ["the kernel-style file with its newline", `${NQN}\n`],
    ["surrounding whitespace", `  \n${NQN}  \n\n`],
  ])("found: %s", async (name, content) => {
    expect(await readHostNqn(runner, file(name, content))).toEqual({ state: "found", nqn: NQN });
  });

  const absent: [string, string | undefined, HostNqnRead["state"], string][] = [
    ["missing", undefined, "missing", "does not exist"],
    ["empty", "", "empty", "is empty"],
    ["whitespace only", " \n\t\n", "empty", "is empty"],
  ];
  test.each(absent)("%s: allowed, said so naming --host-nqn-file", async (name, content, state, words) => {
    const p = file(name, content);
    const r = await readHostNqn(runner, p);
    expect(r.state).toBe(state);
    expect(r.state !== "found" && r.message).toBe(`--host-nqn-file ${p} ${words}`);
  });

  const invalid: [string, string, string][] = [
    ["no nqn. prefix", "node-1\n", "must start with 'nqn.'"],
    ["two NQNs on two lines", `${NQN}\n${NQN}\n`, "without whitespace"],
    ["no colon", "nqn.2014-08.org.nvmexpress\n", "must contain ':'"],
    ["longer than 223 bytes", `nqn.2014-08.org.example:${"x".repeat(220)}\n`, "longer than 223 bytes"],
    ["longer than anything the runner keeps", `nqn.2014-08.org.example:${"x".repeat(8000)}\n`, "longer than an NQN"],
  ];
  test.each(invalid)("invalid, %s: a clear error naming --host-nqn-file and the file", async (name, content, why) => {
    const p = file(name, content);
    const r = await readHostNqn(runner, p);
    expect(r.state).toBe("invalid");
    if (r.state !== "invalid") return;
    expect(r.message).toStartWith(`--host-nqn-file ${p} `);
    expect(r.message).toContain(why);
    expect(r.message.length).toBeLessThan(400);
  });

  test("a directory is unreadable, with the reason", async () => {
    const p = join(dir, "a-directory");
    mkdirSync(p);
    const r = await readHostNqn(runner, p);
    expect(r.state).toBe("unreadable");
    expect(r.state === "unreadable" && r.message).toContain(`--host-nqn-file ${p} could not be read`);
  });

  test("a read that never finishes (a FIFO nobody writes, as a stalled volume would) ends at the deadline", async () => {
    const p = join(dir, "stalled");
    expect(Bun.spawnSync(["mkfifo", p]).exitCode).toBe(0);
    const r = await readHostNqn(runner, p, { timeoutMs: 300 });
    expect(r.state).toBe("unreadable");
    expect(r.state === "unreadable" && r.message).toContain("deadline");
  });
});
