// The tree stays formatted. `npm exec prettier -- --write` on the same globs fixes what this finds
// (settings in .prettierrc.json).
import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const GLOBS = ["src/**/*.ts", "test/**/*.ts", "scripts/**/*.ts"];

test("every TypeScript file in src, test and scripts is formatted", () => {
  const r = Bun.spawnSync([join(ROOT, "node_modules", ".bin", "prettier"), "--list-different", ...GLOBS], {
    cwd: ROOT,
  });
  expect({ exit: r.exitCode, unformatted: r.stdout.toString().split("\n").filter(Boolean) }).toEqual({
    exit: 0,
    unformatted: [],
  });
}, 60_000);
