import { StorageDriverError, type StorageFault } from './storage-driver.ts';

/**
 * What a file system's error codes mean to the layers above (see StorageFault). A code not
 * named here (EISDIR, ENOTEMPTY, ENAMETOOLONG…) is no state of the medium but a fault of the
 * caller or of the layout: it is thrown as it is, not dressed as a fault that would make the
 * mirror wait for an operator or retry later.
 */
const FAULTS: Readonly<Record<string, StorageFault>> = {
  ENOSPC: 'full',
  EDQUOT: 'full',
  EACCES: 'denied',
  EPERM: 'denied',
  EROFS: 'denied',
  EIO: 'unavailable',
  EMFILE: 'unavailable',
  ENFILE: 'unavailable',
  ETIMEDOUT: 'unavailable',
  // A network file system whose server went away or restarted.
  ESTALE: 'unavailable',
  ENOTCONN: 'unavailable',
  EHOSTDOWN: 'unavailable',
};

export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** No such file (or a path component is a file): an object that is not there, never a fault. */
export function isMissing(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * The error a driver operation throws for `error`: a StorageDriverError with its fault when
 * the code names one (the system error as its cause), else `error` unchanged. The message
 * names the operation and the code, not the path: the key travels beside it.
 */
export function driverError(error: unknown, operation: string, key?: string): unknown {
  if (error instanceof StorageDriverError) return error;
  const code = errorCode(error);
  const fault = code === undefined ? undefined : FAULTS[code];
  if (fault === undefined) return error;
  const syscall = (error as NodeJS.ErrnoException).syscall;
  return new StorageDriverError(fault, operation, `${operation}: ${code}${syscall ? ` (${syscall})` : ''}`, { key, cause: error });
}
