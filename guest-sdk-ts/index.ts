/**
 * Write RawaLite renderers in TypeScript.
 *
 * A renderer turns a request into a response and can touch nothing but what
 * the host grants it in `rawalite.toml`: tables through {@link db}, named
 * file roots through {@link paths}, the signed-in user through
 * {@link session}. `src/app.ts` exports `render`:
 *
 * ```ts
 * import { Request, Response, db, escape } from 'rawalite-guest';
 *
 * export function render(req: Request): Response {
 *   const name = req.query.get('name') ?? 'world';
 *   const { n } = db.query<{ n: number }>('SELECT count(*) AS n FROM customers').first()!;
 *   return Response.html(`<h1>Hello, ${escape(name)}!</h1><p>${n} customers</p>`);
 * }
 * ```
 *
 * `rawalite build` type-checks it, bundles it with its npm dependencies and
 * makes it a component (QuickJS, WASI stubbed out: its only imports are the
 * bridge), `rawalite render` runs it.
 *
 * Errors: every capability call throws a {@link GuestError} with a `code`
 * (`not-found`, `denied`, …) and `render` may throw one too: the host answers
 * with the matching status. Anything else thrown is a bug: its stack goes to
 * the log and the host stops the guest with its message.
 *
 * Time and randomness come from the host on every call: `Date.now()`,
 * `new Date()`, `performance.now()`, `Math.random()`,
 * `crypto.getRandomValues()` and `crypto.randomUUID()`. `console.*` goes to
 * the log (`rawalite render --trace` shows it). Integers are JavaScript
 * numbers: exact up to 2^53; cast bigger ones to text in SQL.
 *
 * A guest renders synchronously: bridge calls return their result at once,
 * and the engine runs no promise jobs, so a `render` that returns a Promise
 * is stopped with a message saying so. There is no `setTimeout`, `fetch`
 * or DOM.
 */
import * as sessionImport from 'rawalite:bridge/session@0.1.0';
import type * as Wire from 'rawalite:bridge/types@0.1.0';
import type * as DbWire from 'rawalite:bridge/db@0.1.0';
import type * as PathsWire from 'rawalite:bridge/paths@0.1.0';
import { db as dbImport, paths as pathsImport } from './granted';
import { GuestError, call, decodeUtf8, encodeUtf8, panic, wireError } from './runtime';

export { GuestError, decodeUtf8, encodeUtf8 };
export type { ErrorCode } from 'rawalite:bridge/types@0.1.0';
export type { Entry, Access } from 'rawalite:bridge/paths@0.1.0';
export type { User } from 'rawalite:bridge/session@0.1.0';

function granted<T>(capability: T | null, name: string, key: string): T {
  if (capability === null) {
    throw new GuestError(
      'denied',
      `this guest has no ${name} grant (${key} in the manifest); grant it, then run \`rawalite build\` again`,
    );
  }
  return capability;
}

// --- requests ---------------------------------------------------------------

/** Decoded `key=value` pairs (a query string or a form), in order, repeated keys kept. */
export class Params {
  constructor(readonly pairs: [string, string][]) {}

  /** The first value of `key`. */
  get(key: string): string | undefined {
    return this.pairs.find(([k]) => k === key)?.[1];
  }

  /** Every value of `key`, in order. */
  getAll(key: string): string[] {
    return this.pairs.filter(([k]) => k === key).map(([, v]) => v);
  }

  /** The first value of `key`, trimmed, or "" when it is missing. */
  text(key: string): string {
    return (this.get(key) ?? '').trim();
  }

  has(key: string): boolean {
    return this.pairs.some(([k]) => k === key);
  }

  /** `application/x-www-form-urlencoded` text, decoded (`+` is a space). */
  static parse(text: string): Params {
    const decode = (s: string): string => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s;
      }
    };
    const pairs: [string, string][] = [];
    for (const part of text.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      pairs.push(eq < 0 ? [decode(part), ''] : [decode(part.slice(0, eq)), decode(part.slice(eq + 1))]);
    }
    return new Params(pairs);
  }
}

/** One request, as the guest sees it. */
export class Request {
  readonly method: string;
  /** The guest's route prefix (e.g. `/invoices`), for building links. */
  readonly base: string;
  /** The path after `base`; always starts with `/`. */
  readonly path: string;
  readonly query: Params;
  /** Lower-case names, in order. */
  readonly headers: [string, string][];
  readonly body: Uint8Array;

  constructor(raw: Wire.Request) {
    this.method = raw.method;
    this.base = raw.base;
    this.path = raw.path;
    this.query = new Params(raw.query);
    this.headers = raw.headers;
    this.body = raw.body;
  }

  /** The first value of header `name` (case-insensitive). */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.headers.find(([k]) => k === lower)?.[1];
  }

  /** Whether this is a POST, the method browsers use for forms. */
  get isPost(): boolean {
    return this.method.toUpperCase() === 'POST';
  }

  /** The body as UTF-8 text. */
  text(): string {
    return decodeUtf8(this.body);
  }

  /** The body parsed as `application/x-www-form-urlencoded`. */
  form(): Params {
    return Params.parse(this.text());
  }

  /** A link to `path` inside this guest (`base` + `path`). */
  link(path: string): string {
    return this.base + path;
  }
}

// --- responses --------------------------------------------------------------

/** What the guest answers: a status, headers and a body. */
export class Response {
  constructor(
    public status = 200,
    public headers: [string, string][] = [],
    public body: Uint8Array = new Uint8Array(0),
  ) {}

  /** 200 with an HTML page; escape what users typed with {@link escape}. */
  static html(page: string): Response {
    return Response.bytes('text/html; charset=utf-8', encodeUtf8(page));
  }

  /** 200 with plain text. */
  static text(text: string): Response {
    return Response.bytes('text/plain; charset=utf-8', encodeUtf8(text));
  }

  /** 200 with `value` as JSON. */
  static json(value: unknown): Response {
    return Response.bytes('application/json', encodeUtf8(JSON.stringify(value)));
  }

  /** 200 with `body` as it is. */
  static bytes(contentType: string, body: Uint8Array): Response {
    return new Response(200, [['content-type', contentType]], body);
  }

  /** 303 See Other to `location` (a path on this site). */
  static redirect(location: string): Response {
    return new Response(303, [['location', location]]);
  }

  /** This response with one more header (the host lets only safe ones through). */
  withHeader(name: string, value: string): Response {
    this.headers.push([name.toLowerCase(), value]);
    return this;
  }

  /** This response with another status. */
  withStatus(status: number): Response {
    this.status = status;
    return this;
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** `text` escaped for HTML element content and quoted attribute values. */
export function escape(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// --- db ---------------------------------------------------------------------

/** What a column holds: SQL NULL, an integer or real, text or a blob. */
export type SqlValue = null | number | string | Uint8Array;
/** What a parameter may be (booleans are 0/1, bigints must fit 2^53). */
export type SqlParam = SqlValue | boolean | bigint | undefined;
/** One row, column name to value. */
export type Row = Record<string, SqlValue>;

function toWire(param: SqlParam, at: number): DbWire.Value {
  if (param === null || param === undefined) return { tag: 'null' };
  if (typeof param === 'boolean') return { tag: 'integer', val: param ? 1 : 0 };
  if (typeof param === 'bigint') {
    if (param > BigInt(Number.MAX_SAFE_INTEGER) || param < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new GuestError('invalid-input', `SQL parameter ${at + 1}: ${param} is past 2^53; pass it as text`);
    }
    return { tag: 'integer', val: Number(param) };
  }
  if (typeof param === 'number') {
    return Number.isSafeInteger(param) ? { tag: 'integer', val: param } : { tag: 'real', val: param };
  }
  if (typeof param === 'string') return { tag: 'text', val: param };
  if (param instanceof Uint8Array) return { tag: 'blob', val: param };
  throw new GuestError(
    'invalid-input',
    `SQL parameter ${at + 1} must be null, a number, a string, a boolean or a Uint8Array, not ${typeof param}`,
  );
}

function fromWire(value: DbWire.Value): SqlValue {
  return value.tag === 'null' ? null : value.val;
}

/** The rows of {@link db.query}; iterating gives one object per row. */
export class Rows<R extends object = Row> implements Iterable<R> {
  constructor(
    readonly columns: string[],
    /** Values by row, then by column. */
    readonly values: SqlValue[][],
  ) {}

  get length(): number {
    return this.values.length;
  }

  /** Row `i` as an object, or undefined. */
  at(i: number): R | undefined {
    const row = this.values.at(i);
    if (row === undefined) return undefined;
    const out: Row = {};
    this.columns.forEach((column, c) => (out[column] = row[c]));
    return out as unknown as R;
  }

  /** The first row, or undefined. */
  first(): R | undefined {
    return this.at(0);
  }

  /** Every row as an object. */
  all(): R[] {
    return this.values.map((_, i) => this.at(i)!);
  }

  *[Symbol.iterator](): Iterator<R> {
    for (let i = 0; i < this.values.length; i++) yield this.at(i)!;
  }
}

/** What {@link db.execute} changed. */
export interface Outcome {
  changed: number;
  lastInsertRowid: number;
}

/**
 * SQL against the host's database, under this guest's table grants
 * (`[guest.db]`). Parameters are bound, never spliced:
 * `db.query('SELECT name FROM customers WHERE id = ?', [id])`.
 * Type the rows you expect: `db.query<{ name: string }>(...)`.
 */
export const db = {
  /** One statement that reads. */
  query<R extends object = Row>(sql: string, params: SqlParam[] = []): Rows<R> {
    const bridge = granted(dbImport, 'db', '[guest.db]');
    const rows = call(() => bridge.query(sql, params.map(toWire)));
    return new Rows<R>(rows.columns, rows.rows.map((row) => row.map(fromWire)));
  },

  /** One statement that changes rows. */
  execute(sql: string, params: SqlParam[] = []): Outcome {
    const bridge = granted(dbImport, 'db', '[guest.db]');
    return call(() => bridge.execute(sql, params.map(toWire)));
  },

  /** `[sql, params]` pairs, all or nothing; one outcome each. */
  transaction(statements: [string, SqlParam[]][]): Outcome[] {
    const bridge = granted(dbImport, 'db', '[guest.db]');
    const batch = statements.map(([sql, params]) => ({ sql, params: params.map(toWire) }));
    return call(() => bridge.transaction(batch));
  },
};

// --- paths ------------------------------------------------------------------

/** An opened root (`[guest.paths]`): every path is relative to it and cannot leave it. */
export class Root {
  constructor(private readonly raw: PathsWire.Root) {}

  /** Whether the grant is `read-write`. */
  get writable(): boolean {
    return this.raw.access() === 'read-write';
  }

  read(path: string): Uint8Array {
    return call(() => this.raw.read(path));
  }

  /** A file as UTF-8 text. */
  readText(path: string): string {
    return decodeUtf8(this.read(path));
  }

  /** Atomic: the old contents or the new ones, never a torn file. */
  write(path: string, contents: string | Uint8Array): void {
    const bytes = typeof contents === 'string' ? encodeUtf8(contents) : contents;
    call(() => this.raw.write(path, bytes));
  }

  /** A directory's entries; `""` is the root. */
  listDir(path = ''): PathsWire.Entry[] {
    return call(() => this.raw.listDir(path));
  }

  /** A file or an empty directory. */
  remove(path: string): void {
    call(() => this.raw.remove(path));
  }

  createDir(path: string): void {
    call(() => this.raw.createDir(path));
  }
}

/** Named file roots (`[guest.paths]`). */
export const paths = {
  /** The root names this guest may open. */
  granted(): string[] {
    return pathsImport?.granted() ?? [];
  },

  /** Opens a granted root; any other name is `denied`. */
  open(name: string): Root {
    const bridge = granted(pathsImport, 'paths', '[guest.paths]');
    return new Root(call(() => bridge.open(name)));
  },
};

// --- session ----------------------------------------------------------------

/** The signed-in user of this request. */
export const session = {
  /** Who is signed in, if anyone. */
  current(): sessionImport.User | null {
    return sessionImport.current();
  },

  hasRole(role: string): boolean {
    return sessionImport.hasRole(role);
  },

  /** Signs a user in (needs `login = true` in `[guest.session]`). */
  login(username: string, password: string): sessionImport.User {
    return call(() => sessionImport.login(username, password));
  },

  logout(): void {
    sessionImport.logout();
  },
};

// --- the guard ----------------------------------------------------------------

/**
 * The component's `render`: the guest's handler behind the guard that
 * `rawalite build` puts around it. A {@link GuestError} (or a bridge error
 * let through) becomes the request's error; anything else thrown is a bug,
 * and stops the guest with its message, the stack going to the log.
 */
export function serve(render: (req: Request) => Response): (req: Wire.Request) => Wire.Response {
  return (raw) => {
    let out: unknown;
    try {
      out = render(new Request(raw));
    } catch (e) {
      const wire = e instanceof GuestError ? { code: e.code, message: e.message } : wireError(e);
      if (wire) throw wire;
      panic(e);
    }
    if (typeof (out as { then?: unknown } | null)?.then === 'function') {
      panic(
        new TypeError(
          'render returned a Promise: a guest renders synchronously (bridge calls return their ' +
            'result at once; this engine runs no promise jobs), so drop `async`/`await`',
        ),
      );
    }
    const { status, headers, body } = (out ?? {}) as Partial<Wire.Response>;
    if (typeof status !== 'number' || !Array.isArray(headers) || !(body instanceof Uint8Array)) {
      panic(new TypeError('render must return a Response (e.g. `Response.html(page)`)'));
    }
    return { status, headers, body };
  };
}
