import * as v from "valibot";
import type { OptionSpec } from "./option-spec.ts";
import { DEFAULTS } from "./defaults.ts";
import { NqnPrefixSchema, ProtectedPatternSchema } from "./nqn.ts";
import { AbsolutePath, DurationMs, Endpoint, FileMode, HostPort, PositiveInt } from "./schemas.ts";

/** nvme-cli, for every mode that runs it (one name: csi-node had --nvme-command, gc --nvme-bin, doctor none). */
export const NVME_COMMAND_OPTION = {
  name: "nvme-command",
  type: "string",
  describe: "nvme-cli executable",
  default: "nvme",
  schema: v.pipe(v.string(), v.minLength(1)),
  deprecated: ["nvme-bin"],
} as const satisfies OptionSpec;

/** The host NQN file, for every mode that reads it (doctor called it --hostnqn-file). */
export const HOST_NQN_FILE_OPTION = {
  name: "host-nqn-file",
  type: "string",
  describe: "Host NQN file (missing or empty: no host NQN; content that is not an NQN is refused)",
  default: "/etc/nvme/hostnqn",
  schema: AbsolutePath,
  deprecated: ["hostnqn-file"],
} as const satisfies OptionSpec;

/** Options every mode accepts. Mode-specific ones live in the mode's own file. */
export const COMMON_OPTIONS = [
  {
    name: "config",
    type: "string",
    describe: "Config file (JSON or YAML; keys are option names)",
    schema: AbsolutePath,
  },
  { name: "endpoint", type: "string", describe: "CSI endpoint", default: DEFAULTS.endpoint, schema: Endpoint },
  {
    name: "driver-name",
    type: "string",
    describe: "CSI driver name",
    default: DEFAULTS.driverName,
    schema: v.pipe(
      v.string(),
      v.regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/, "must be a DNS-1123 subdomain of at most 63 characters"),
    ),
  },
  {
    name: "node-id",
    type: "string",
    describe: "Node name reported to the CO (default: hostname)",
    schema: v.pipe(
      v.string(),
      v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "must be a host name (letters, digits, . _ -)"),
    ),
  },
  {
    name: "nqn-prefix",
    type: "string",
    describe: "Managed NVMe NQN prefix: only subsystems starting with it are ever touched",
    env: ["CSI_MANAGED_NQN_PREFIX"],
    schema: NqnPrefixSchema,
  },
  {
    name: "protected-nqn",
    type: "array",
    describe: "NQN or glob never connected, disconnected or collected (repeatable)",
    default: [],
    schema: v.array(ProtectedPatternSchema),
  },
  {
    name: "state-dir",
    type: "string",
    describe: "Local state: staging records, locks, admin socket",
    default: DEFAULTS.stateDir,
    schema: AbsolutePath,
  },
  {
    name: "kubelet-dir",
    type: "string",
    describe: "Kubelet root directory",
    default: DEFAULTS.kubeletDir,
    schema: AbsolutePath,
  },
  {
    name: "sysfs-root",
    type: "string",
    describe: "sysfs root (tests use a fabricated tree)",
    default: "/sys",
    schema: AbsolutePath,
  },
  {
    name: "dev-root",
    type: "string",
    describe: "/dev root (tests use a fabricated tree)",
    default: "/dev",
    schema: AbsolutePath,
  },
  {
    name: "proc-root",
    type: "string",
    describe: "/proc root (tests use a fabricated tree)",
    default: "/proc",
    schema: AbsolutePath,
  },
  {
    name: "metrics-address",
    type: "string",
    describe: "Serve Prometheus /metrics on host:port (off when unset)",
    schema: HostPort,
  },
  {
    name: "shutdown-grace",
    type: "string",
    describe: "How long in-flight work may run after SIGTERM",
    default: `${DEFAULTS.shutdownGraceSeconds}s`,
    schema: DurationMs,
  },
  {
    name: "log-level",
    type: "string",
    describe: "Log level",
    default: "info",
    choices: ["trace", "debug", "info", "warn", "error", "fatal", "silent"],
  },
  { name: "log-format", type: "string", describe: "Log format", default: "json", choices: ["json", "pretty"] },
  {
    name: "allow-shared-socket-dir",
    type: "boolean",
    describe: "Accept a CSI socket directory that other users may write to (refused by default)",
    default: false,
  },
  {
    name: "socket-mode",
    type: "string",
    describe: "File mode of the CSI unix socket",
    default: DEFAULTS.socketMode,
    schema: FileMode,
  },
  {
    name: "breaker-threshold",
    type: "number",
    describe: "Consecutive failures that open a circuit breaker",
    default: 3,
    schema: PositiveInt,
  },
  {
    name: "breaker-open",
    type: "string",
    describe: "First open period of a breaker (doubles on each re-open)",
    default: "1m",
    schema: DurationMs,
  },
  {
    name: "breaker-max-open",
    type: "string",
    describe: "Longest open period of a breaker",
    default: "30m",
    schema: DurationMs,
  },
] as const satisfies readonly OptionSpec[];
