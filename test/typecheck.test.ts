import { expect, test } from "bun:test";

// The strict TypeScript check is part of the suite: a type error anywhere fails CI, with tsc's output.
test("the whole project typechecks under strict tsconfig", () => {
  const root = `${import.meta.dir}/..`;
  const r = Bun.spawnSync(["node_modules/.bin/tsc", "--noEmit", "-p", "."], { cwd: root, timeout: 170_000 });
  const out = r.stdout.toString() + r.stderr.toString();
  expect(out.trim()).toBe("");
  expect(r.exitCode).toBe(0);
}, 180_000);
