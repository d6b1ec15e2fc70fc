// Logging for every kvstore process, through logtape, in the request's style:
//
//     2026-12-03T10:00:00.000Z [node 3] [INFO] became LEADER term 12 with votes=3 (required=3)
//     2026-12-03T10:00:00.000Z [node 1] [Leader] [INFO] listening clients on 7001
//     2026-12-03T10:00:00.000Z [node 2] [Follower] [WARN] connect failed, sleeping 400 ms
//
// Lines go to stderr synchronously so that the last words of a crashing
// process are never lost in a buffer. Shells call `setupLogging` once, then
// `logger(...)`; the pure core never logs (it returns log effects instead).

import {
  configureSync,
  getLogger,
  type Logger as LtLogger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

export type LevelName = "debug" | "info" | "warn" | "error";
export const levelNames: readonly LevelName[] = ["debug", "info", "warn", "error"];

const encoder = new TextEncoder();

function format(record: LogRecord): string {
  const text = record.message.map((part) => (typeof part === "string" ? part : String(part))).join(
    "",
  );
  const [, node, role] = record.category;
  const level = record.level === "warning" ? "WARN" : record.level.toUpperCase();
  const prefix = (node ? `[${node}] ` : "") + (role ? `[${role}] ` : "");
  return `${new Date(record.timestamp).toISOString()} ${prefix}[${level}] ${text}\n`;
}

function stderrSink(record: LogRecord): void {
  const bytes = encoder.encode(format(record));
  let written = 0;
  try {
    while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
  } catch {
    // stderr is gone (our parent died); nothing useful left to do with a log line.
  }
}

export function parseLevel(name: string): LevelName | null {
  const lower = name.toLowerCase();
  return (levelNames as readonly string[]).includes(lower) ? lower as LevelName : null;
}

export function setupLogging(level: LevelName): void {
  const lowestLevel: LogLevel = level === "warn" ? "warning" : level;
  configureSync({
    reset: true,
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["kvstore"], lowestLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

export interface Log {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A logger for one process: `node` is e.g. "node 3", `role` e.g. "Leader". */
export function logger(node: string, role?: string): Log {
  const lt: LtLogger = getLogger(role ? ["kvstore", node, role] : ["kvstore", node]);
  // Messages are passed as a property so braces in user data are never read
  // as logtape placeholders.
  return {
    debug: (m) => lt.debug("{m}", { m }),
    info: (m) => lt.info("{m}", { m }),
    warn: (m) => lt.warn("{m}", { m }),
    error: (m) => lt.error("{m}", { m }),
  };
}
