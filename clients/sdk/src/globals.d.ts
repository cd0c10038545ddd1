// The few host globals the SDK touches. Declared here so that the SDK compiles
// against lib ES2020 alone: no DOM, no Node types. Every one is present in
// browsers, React Native and Node 20.
declare function setTimeout(fn: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare var console: { warn(...args: unknown[]): void };
