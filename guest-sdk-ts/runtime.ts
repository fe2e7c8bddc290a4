// What every TypeScript guest gets before its own code runs: the time and
// entropy from the host, `console` into the log, UTF-8 text codecs, and the
// errors that cross the boundary.
//
// A guest runs on QuickJS built with WASI stubbed out: the engine's own
// clock traps and its `Math.random` seed is frozen into the component at
// build time. So every source of time and randomness is replaced here by
// the bridge's `clock` and `random`, asked on every call. This module runs
// when the component is built (its snapshot); nothing here calls the host
// until a request does.
import * as clock from 'rawalite:bridge/clock@0.1.0';
import * as log from 'rawalite:bridge/log@0.1.0';
import * as random from 'rawalite:bridge/random@0.1.0';
import type { Error as WireError, ErrorCode } from 'rawalite:bridge/types@0.1.0';

// --- time -------------------------------------------------------------------

const EngineDate = Date;
const nowMs = (): number => Math.floor(clock.nowMicros() / 1000);
EngineDate.now = nowMs;
// `new Date()` and `Date()` read the host's clock; every other use is the
// engine's own Date, so `instanceof Date` and `Date.UTC` still work.
globalThis.Date = new Proxy(EngineDate, {
  construct(target, args, newTarget) {
    return Reflect.construct(target, args.length === 0 ? [nowMs()] : args, newTarget);
  },
  apply() {
    return new EngineDate(nowMs()).toString();
  },
});

let timeOrigin: number | undefined;
Object.defineProperty(globalThis, 'performance', {
  value: {
    /** Milliseconds since this request's first call (the host's wall clock, in µs). */
    now(): number {
      const now = clock.nowMicros() / 1000;
      timeOrigin ??= now;
      return now - timeOrigin;
    },
  },
  configurable: true,
  writable: true,
});

// --- randomness -------------------------------------------------------------

/** Most bytes one `crypto.getRandomValues` may ask for, as in browsers. */
const MAX_RANDOM_BYTES = 65536;

// Math.random draws from a pool of host entropy, refilled as it runs out.
// The pool starts empty in every instance, so no two requests share it.
let pool: Uint8Array = new Uint8Array(0);
let poolAt = 0;
Math.random = (): number => {
  if (poolAt + 7 > pool.length) {
    pool = random.bytes(4096);
    poolAt = 0;
  }
  // 53 random bits: the 7 bytes give 56, the top 3 are dropped.
  let bits = pool[poolAt++] & 0x1f;
  for (let i = 0; i < 6; i++) bits = bits * 256 + pool[poolAt++];
  return bits / 2 ** 53;
};

type IntegerArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

function getRandomValues<T extends IntegerArray>(array: T): T {
  if (array.byteLength > MAX_RANDOM_BYTES) {
    throw new RangeError(
      `crypto.getRandomValues: ${array.byteLength} bytes asked for, at most ${MAX_RANDOM_BYTES} at a time`,
    );
  }
  new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(
    random.bytes(array.byteLength),
  );
  return array;
}

function randomUUID(): string {
  const b = random.bytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

Object.defineProperty(globalThis, 'crypto', {
  value: { getRandomValues, randomUUID },
  configurable: true,
  writable: true,
});

// --- text -------------------------------------------------------------------

/** `text` as UTF-8 (a lone surrogate becomes U+FFFD, as TextEncoder does). */
export function encodeUtf8(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 3);
  let at = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[at++] = c;
      continue;
    }
    if (c < 0x800) {
      out[at++] = 0xc0 | (c >> 6);
      out[at++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c < 0xe000) {
      const next = text.charCodeAt(i + 1);
      if (c < 0xdc00 && next >= 0xdc00 && next < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        out[at++] = 0xf0 | (c >> 18);
        out[at++] = 0x80 | ((c >> 12) & 0x3f);
        out[at++] = 0x80 | ((c >> 6) & 0x3f);
        out[at++] = 0x80 | (c & 0x3f);
        continue;
      }
      c = 0xfffd;
    }
    out[at++] = 0xe0 | (c >> 12);
    out[at++] = 0x80 | ((c >> 6) & 0x3f);
    out[at++] = 0x80 | (c & 0x3f);
  }
  return out.subarray(0, at);
}

/** Smallest code point of a sequence of 2, 3 or 4 bytes (shorter is overlong). */
const MIN_CODE_POINT = [0, 0x80, 0x800, 0x10000];

/**
 * UTF-8 `bytes` as text. A malformed sequence (truncated, overlong, a
 * surrogate, past U+10FFFF) becomes one U+FFFD.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  let out = '';
  let units: number[] = [];
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    if (b < 0x80) {
      units.push(b);
      i++;
    } else {
      // Continuation bytes this lead byte announces (0: not a lead byte).
      const need = b >= 0xc2 && b < 0xe0 ? 1 : b >= 0xe0 && b < 0xf0 ? 2 : b >= 0xf0 && b < 0xf5 ? 3 : 0;
      let c = b & (0x3f >> need);
      let k = 1;
      for (; k <= need; k++) {
        const next = bytes[i + k];
        if (next === undefined || (next & 0xc0) !== 0x80) break;
        c = (c << 6) | (next & 0x3f);
      }
      if (need === 0 || k <= need || c < MIN_CODE_POINT[need] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) {
        units.push(0xfffd);
      } else if (c >= 0x10000) {
        units.push(0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
      } else {
        units.push(c);
      }
      i += k;
    }
    if (units.length >= 4096) {
      out += String.fromCharCode(...units);
      units = [];
    }
  }
  return out + String.fromCharCode(...units);
}

class Utf8Encoder {
  readonly encoding = 'utf-8';
  encode(text = ''): Uint8Array {
    return encodeUtf8(text);
  }
}

class Utf8Decoder {
  readonly encoding = 'utf-8';
  constructor(label = 'utf-8') {
    if (!/^utf-?8$/i.test(label)) throw new RangeError(`TextDecoder: only UTF-8, not ${label}`);
  }
  decode(bytes?: ArrayBuffer | ArrayBufferView): string {
    if (bytes === undefined) return '';
    const view = ArrayBuffer.isView(bytes)
      ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      : new Uint8Array(bytes);
    return decodeUtf8(view);
  }
}

for (const [name, value] of [
  ['TextEncoder', Utf8Encoder],
  ['TextDecoder', Utf8Decoder],
] as const) {
  if (!(name in globalThis)) {
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
}

// --- console ----------------------------------------------------------------

function show(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${value}\n${value.stack}` : String(value);
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v));
    } catch {
      return String(value);
    }
  }
  return String(value);
}

const printer =
  (to: 'stdout' | 'stderr') =>
  (...args: unknown[]): void =>
    log.write(to, args.map(show).join(' ') + '\n');

Object.defineProperty(globalThis, 'console', {
  value: {
    log: printer('stdout'),
    info: printer('stdout'),
    debug: printer('stdout'),
    warn: printer('stderr'),
    error: printer('stderr'),
  },
  configurable: true,
  writable: true,
});

// --- errors -----------------------------------------------------------------

const CODES: readonly ErrorCode[] = [
  'invalid-input',
  'denied',
  'not-found',
  'conflict',
  'too-large',
  'unauthenticated',
  'timeout',
  'unavailable',
  'internal',
];

/**
 * An error that crosses the boundary: the host answers it with the status
 * of its code (`not-found` 404, `denied` 403, …) and `message` on the error
 * page. Every bridge call throws one; `render` may throw one too.
 */
export class GuestError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'GuestError';
    this.code = code;
  }
}

/** The bridge's own `{code, message}`, if `e` carries one. */
export function wireError(e: unknown): WireError | undefined {
  const payload = (e as { payload?: unknown } | null)?.payload ?? e;
  const { code, message } = (payload ?? {}) as Partial<WireError>;
  return CODES.includes(code as ErrorCode) && typeof message === 'string'
    ? { code: code as ErrorCode, message }
    : undefined;
}

/** Runs a bridge call, throwing its error as a {@link GuestError}. */
export function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const wire = wireError(e);
    throw wire ? new GuestError(wire.code, wire.message) : e;
  }
}

/** The table `rawalite build` appends to the bundle: each line's origin. */
interface SourceLines {
  files: string[];
  /** Per line of the bundle, `file:line` (an index into `files`) or "". */
  lines: string;
}

/** Where `app.js:line:column` of the bundle came from, e.g. `src/app.ts:12`. */
function origin(line: number, column: number): string {
  const table = (globalThis as { __rawaliteSourceLines?: SourceLines }).__rawaliteSourceLines;
  const [file, at] = (table?.lines.split(',')[line - 1] ?? '').split(':');
  const path = table?.files[Number(file)];
  return path && at ? `${path}:${at}` : `target/rawalite-sdk/app.js:${line}:${column}`;
}

/** Stops the guest for a bug: its stack to the log, its message to the host. */
export function panic(e: unknown): never {
  const error = e instanceof Error ? e : undefined;
  const message = error ? `${error.name}: ${error.message}` : `uncaught ${show(e)}`;
  // Frames name lines of the bundle; name the project's files instead.
  const stack = (error?.stack?.trim() ?? '').replace(/\/?app\.js:(\d+):(\d+)/g, (_, line, column) =>
    origin(Number(line), Number(column)),
  );
  if (stack) log.write('stderr', `${message}\n${stack}\n`);
  const location = /\(([^()]+:\d+)\)/.exec(stack)?.[1] ?? 'render';
  log.panic(message, location);
  throw e; // log.panic does not return
}
