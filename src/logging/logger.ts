import winston from 'winston';
import type { Config } from '../config/schema.ts';

export type Logger = winston.Logger;

/**
 * Builds the process logger: JSON lines (json/logstash) or one readable line per event (text).
 * Callers log fields first and a short fixed message; secrets are never passed in.
 */
export function createLogger(config: Config['log']): Logger {
  const text = winston.format.printf(({ level, message, timestamp, ...fields }) => {
    const rest = Object.entries(fields)
      .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
      .join(' ');
    return `${timestamp} ${level} ${message}${rest ? ` ${rest}` : ''}`;
  });
  return winston.createLogger({
    level: config.level,
    defaultMeta: config.fields,
    format: winston.format.combine(winston.format.timestamp(), config.formatter === 'text' ? text : winston.format.json()),
    transports: [new winston.transports.Console()],
  });
}
