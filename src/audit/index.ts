export { AuditLog, auditLogPath } from "./audit-log.js";
export {
  auditRecordHash,
  decisionRecord,
  GENESIS_HASH,
  isDecisionRecord,
  LIFECYCLE_EVENTS,
  toAuditRecord,
} from "./records.js";
export type {
  AuditAppendInput,
  AuditRecord,
  ChainFields,
  DecisionFields,
  DecisionRecord,
  LifecycleEventName,
  LifecycleFields,
  LifecycleRecord,
  MeteredFields,
  RequestEnd,
  RequestLine,
  RunIdentity,
} from "./records.js";
export { redactPath } from "./redact-path.js";
export { verifyAuditLog } from "./verify.js";
export type { AuditVerifyResult } from "./verify.js";
export { followAuditLog, matchesAuditFilter, readAuditRecords } from "./read.js";
export type { AuditFilter, FollowOptions } from "./read.js";
export {
  listSessionRecords,
  newSessionId,
  readSessionRecord,
  summarizeCommand,
  writeSessionRecord,
} from "./sessions.js";
export type { SessionRecord } from "./sessions.js";
