import winston from 'winston';
import Transport from 'winston-transport';
import type { Config } from '../config/schema.ts';

export type Logger = winston.Logger;

/**
 * Builds the process logger: JSON lines (json), logstash-shaped JSON lines (logstash), or one
 * readable line per event (text).
 * Callers log fields first and a short fixed message; secrets are never passed in.
 */
export function createLogger(config: Config['log']): Logger {
  const text = winston.format.printf(({ level, message, timestamp, ...fields }) => {
    const rest = Object.entries(fields)
      .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
      .join(' ');
    return `${String(timestamp)} ${level} ${String(message)}${rest ? ` ${rest}` : ''}`;
  });
  // logstash's json codec (and logrus's logstash formatter, which distribution uses): @timestamp
  // and @version, the message under `message`, the fields beside it.
  const logstash = winston.format.printf(({ level, message, timestamp, ...fields }) =>
    JSON.stringify({ '@timestamp': timestamp, '@version': '1', message, level, ...fields }),
  );
  const formats = { text, json: winston.format.json(), logstash };
  return winston.createLogger({
    level: config.level,
    defaultMeta: config.fields,
    format: winston.format.combine(winston.format.timestamp(), formats[config.formatter]),
    transports: [new StdoutTransport()],
  });
}

const MESSAGE = Symbol.for('message');

/*
 * Access lines (JSON or Combined) are gathered during one turn of the event loop and written
 * at its end in one write: a busy mirror logs thousands a second, and a write each cost ~20% of
 * the manifest requests a second it served. Every other line is written at once (after the
 * access lines before it, keeping the order), so an operational event is on disk as soon as it
 * happened. Access lines still pending are written at exit.
 */
let pending: string[] = [];
let scheduled = false;
process.on('exit', flushStdout);

/** The message of the one access line per request (request-context.ts); the transport queues these. */
export const ACCESS_MESSAGE = 'request';

/** Queues an access line for stdout; it is written with the others at the end of this turn. */
export function queueAccessLine(line: string): void {
  pending.push(line);
  if (scheduled) return;
  scheduled = true;
  setImmediate(flushStdout);
}

function flushStdout(): void {
  scheduled = false;
  if (pending.length === 0) return;
  const text = pending.join('');
  pending = [];
  process.stdout.write(text);
}

/** winston's lines to stdout: access lines queued, the others written at once. */
class StdoutTransport extends Transport {
  override log(info: Record<PropertyKey, unknown>, callback: () => void): void {
    const line = `${String(info[MESSAGE])}\n`;
    if (info.message === ACCESS_MESSAGE) {
      queueAccessLine(line);
    } else {
      pending.push(line);
      flushStdout();
    }
    callback();
  }
}
