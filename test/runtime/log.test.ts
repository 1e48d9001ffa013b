import { describe, expect, test } from "bun:test";
import { redactArgs, redactText } from "../../src/runtime/redact.ts";
import { createLogger } from "../../src/runtime/log.ts";
import { captureLogger } from "../helpers/log-capture.ts";

describe("logging and redaction", () => {
  test("JSON lines with child fields op, volume_id, nqn", () => {
    const cap = captureLogger();
    cap.log.child({ op: "NodeStageVolume", volume_id: "pvc-1", nqn: "nqn.x:pvc-1" }).info("staged");
    expect(cap.lines()[0]).toMatchObject({
      level: "info",
      msg: "staged",
      op: "NodeStageVolume",
      volume_id: "pvc-1",
      nqn: "nqn.x:pvc-1",
    });
  });

  test("secrets are redacted from fields, nested objects, messages and errors", () => {
    const cap = captureLogger();
    cap.log.info(
      {
        password: "hunter2",
        secrets: { chapSecret: "s3cr3t-chap" },
        headers: { authorization: "Basic dXNlcjpodW50ZXIy" },
      },
      "calling with token=abc123def",
    );
    cap.log.error({ err: new Error("login failed for https://admin:hunter2@rds.local/rest") }, "boom");
    const text = cap.text();
    for (const s of ["hunter2", "s3cr3t-chap", "dXNlcjpodW50ZXIy", "abc123def"]) expect(text).not.toContain(s);
    expect(text).toContain("[REDACTED]");
  });

  test("command lines: values after secret flags and key=value secrets", () => {
    expect(
      redactArgs(["connect", "-n", "nqn.x", "--dhchap-secret", "DHHC-1:01:abc:", "-S", "k", "--password=pw"]),
    ).toEqual(["connect", "-n", "nqn.x", "--dhchap-secret", "[REDACTED]", "-S", "[REDACTED]", "--password=[REDACTED]"]);
    expect(redactText("curl -H 'Authorization: Bearer eyJabc.def' nvme-tcp-server-password=xyz")).not.toMatch(
      /eyJabc|xyz/,
    );
  });

  test("pretty format writes one readable line", () => {
    const out: string[] = [];
    createLogger({ format: "pretty", destination: { write: (l: string) => void out.push(l) } }).warn(
      { volume_id: "pvc-9" },
      "slow",
    );
    expect(out.join("")).toMatch(/WARN\s+slow\s+.*volume_id=pvc-9/);
  });
});
