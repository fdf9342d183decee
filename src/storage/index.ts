export {
  createFileExclusive,
  PUBLIC_FILE_MODE,
  SECRET_FILE_MODE,
  writeFileAtomic,
} from "./atomic-file.js";
export { LinkedFileLock, withFileLock } from "./file-lock.js";
export {
  currentBootId,
  isProcessAlive,
  OWN_PROCESS,
  readProcStat,
  stampProcess,
} from "./process-identity.js";
export type { ProcessStamp } from "./process-identity.js";
export { FailureLatch } from "./failure-latch.js";
export { describeError, fsyncDirectory, JournalFile } from "./journal-file.js";
export type { JournalOpenMode } from "./journal-file.js";
export { TurnBatcher } from "./turn-batcher.js";
export type { BatchOutcome, BatchTarget, TurnBatcherOptions } from "./turn-batcher.js";
