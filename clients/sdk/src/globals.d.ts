// The few host globals the SDK touches. Declared here so that the SDK compiles
// against lib ES2020 alone: no DOM, no Node types. Every one is present in
// browsers, React Native and Node 20.
declare function setTimeout(fn: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare var console: { warn(...args: unknown[]): void };
// media.ts
interface Blob {
  readonly size: number;
  readonly type: string;
  slice(start?: number, end?: number): Blob;
  arrayBuffer(): Promise<ArrayBuffer>;
}
declare var Blob: { prototype: Blob; new (parts?: (ArrayBuffer | ArrayBufferView | Blob | string)[], o?: { type?: string }): Blob };
interface AbortSignal {
  readonly aborted: boolean;
}
declare function btoa(s: string): string;
declare class TextEncoder {
  encode(s: string): Uint8Array;
}
declare class URL {
  constructor(u: string, base?: string);
  readonly searchParams: { get(n: string): string | null };
}
