// @parley/client/e2ee: end-to-end encryption for @parley/client, a module of
// its own so that apps without it do not carry its size. Pass `new E2EE()` as
// the client's `e2ee` option; docs/design/e2ee.md is the contract.
export { E2EE } from "./e2ee.js";
export type { E2EEOptions, DeviceInfo } from "./e2ee.js";
export {
  SUITE,
  suite,
  useEngine,
  newIdentity,
  identityFromSeed,
  newHpkeKey,
  hpkeKeyFromPrivate,
  sign,
  verify,
  deviceKeyInput,
  contentAd,
  signatureInput,
  keyAad,
  sealContent,
  openContent,
  sealKey,
  openKey,
  sealKeys,
  openEnvelope,
  parseContent,
  fingerprint,
  fingerprintInput,
  safetyNumber,
} from "./crypto.js";
export type { KeyPair, MessageIds, WireKey, Recipient, Reason, ReceivedEnvelope } from "./crypto.js";
export { encryptFile, decryptFile, encryptedFileSize, FILE_CHUNK } from "./file.js";
export { b64, unb64, hex, unhex, utf8, lp, u64 } from "./bytes.js";
