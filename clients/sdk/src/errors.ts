/**
 * ParleyError is every error the SDK reports. `code` is the server's code
 * (docs/errors.md) or `network`, `timeout` or `closed` for local failures.
 */
export class ParleyError extends Error {
  code: string;
  status?: number;
  /** Seconds to wait before retrying (rate_limited). */
  retryAfter?: number;
  requestId?: string;
  /** the error object's other fields (device_mismatch: missing, extra, stale) */
  data?: Record<string, unknown>;

  constructor(code: string, message?: string, extra?: { status?: number; retryAfter?: number; requestId?: string }) {
    super(message || code);
    this.name = "ParleyError";
    this.code = code;
    if (extra) {
      if (extra.status !== undefined) this.status = extra.status;
      if (extra.retryAfter !== undefined) this.retryAfter = extra.retryAfter;
      if (extra.requestId) this.requestId = extra.requestId;
    }
  }
}

/** asError turns anything thrown into a ParleyError (network for the unknown). */
export function asError(e: unknown): ParleyError {
  return e instanceof ParleyError ? e : new ParleyError("network", e instanceof Error ? e.message : String(e));
}

/** errorOf reads the `error` object of a WebSocket error frame. */
export function errorOf(e: { code?: string; message?: string; retry_after?: number } | undefined): ParleyError {
  const err = new ParleyError(e?.code || "internal", e?.message, e?.retry_after ? { retryAfter: e.retry_after } : undefined);
  if (e) err.data = e;
  return err;
}
