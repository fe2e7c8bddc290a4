// The globals a TypeScript guest has beyond ES2022, all provided by the
// SDK's runtime.ts (QuickJS has none of them on its own). Nothing else of
// the browser or Node exists: no `fetch`, `setTimeout`, `URL` or DOM.

interface Console {
  /** To the log's stdout (`rawalite render --trace` shows it). */
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  /** To the log's stderr. */
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}
declare var console: Console;

/** UTF-8 only. */
declare class TextEncoder {
  readonly encoding: 'utf-8';
  encode(text?: string): Uint8Array;
}
/** UTF-8 only; malformed input becomes U+FFFD. */
declare class TextDecoder {
  constructor(label?: string);
  readonly encoding: 'utf-8';
  decode(bytes?: ArrayBuffer | ArrayBufferView): string;
}

/** Fresh entropy from the host on every call (at most 65,536 bytes at a time). */
declare var crypto: {
  getRandomValues<T extends Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array>(array: T): T;
  randomUUID(): string;
};

/** Milliseconds since the request's first call, from the host's clock. */
declare var performance: { now(): number };
