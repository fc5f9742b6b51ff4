// SPDX-License-Identifier: Apache-2.0
// The agent's logger: pino, JSON lines on stderr (stdout stays free for
// commands such as --cleanup that print results).
import { pino, type Logger } from "pino";

export type { Logger };

/** Create the root logger at the given level. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { component: "twill-agent" } }, pino.destination(2));
}
