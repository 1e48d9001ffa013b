import type { Mode } from "./types.ts";
import { mode as breaker } from "./breaker.ts";
import { mode as csiController } from "./csi-controller.ts";
import { mode as csiNode } from "./csi-node.ts";
import { mode as doctor } from "./doctor.ts";
import { mode as gc } from "./gc.ts";
import { mode as version } from "./version.ts";

/** Every mode of the binary; main.ts builds the CLI from this list. */
export const MODES: Mode[] = [breaker, csiController, csiNode, doctor, gc, version];
