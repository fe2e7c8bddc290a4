// The TypeScript test instrument: each route exercises one part of the
// TypeScript SDK so the host's tests can check it from outside
// (tests/api/typescript.rs).
import { GuestError, Request, Response, db, escape, paths, session } from 'rawalite-guest';

const ROUTES: Record<string, (req: Request) => Response> = {
  '/echo': (req) => {
    const form = req.form();
    return Response.json({
      method: req.method,
      path: req.path,
      query: req.query.getAll('q'),
      name: req.query.text('name'),
      form: form.pairs,
      post: req.isPost,
      agent: req.header('User-Agent') ?? null,
      link: req.link('/x'),
    });
  },
  '/escape': (req) => Response.text(escape(req.query.get('text') ?? '')),
  '/values': () => {
    // Every kind of value there and back.
    const row = db
      .query('SELECT ? AS n, ? AS i, ? AS r, ? AS t, ? AS b, ? AS yes, ? AS big', [
        null,
        -(2 ** 53) + 1,
        1.5,
        'grüße <&> 😀',
        new Uint8Array([0, 255]),
        true,
        2n ** 40n,
      ])
      .first()!;
    const b = row.b as Uint8Array;
    return Response.json({ ...row, b: Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('') });
  },
  '/customers': (req) => {
    const rows = db.query<{ id: number; name: string }>('SELECT id, name FROM customers ORDER BY id LIMIT ?', [
      Number(req.query.get('limit') ?? '10'),
    ]);
    return Response.json({ columns: rows.columns, count: rows.length, names: rows.all().map((r) => r.name) });
  },
  '/fresh': () => {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Response.json({
      now: Date.now(),
      date: new Date().toISOString(),
      random: Math.random(),
      bytes: Array.from(bytes).join(','),
      uuid: crypto.randomUUID(),
      elapsed: performance.now(),
    });
  },
  '/denied': () => {
    db.query('SELECT * FROM invoices');
    return Response.text('unreachable');
  },
  '/caught': () => {
    // A bridge error is a GuestError with its code, for the guest to handle.
    try {
      db.query('SELECT * FROM invoices');
      return Response.text('unreachable');
    } catch (e) {
      if (!(e instanceof GuestError)) throw e;
      return Response.json({ code: e.code, message: e.message });
    }
  },
  '/user': () => {
    const who = session.current();
    return Response.json({ user: who?.username ?? null, admin: session.hasRole('admin') });
  },
  '/files': (req) => {
    const root = paths.open('scratch');
    root.write('note.txt', req.query.get('text') ?? 'hi');
    return Response.json({
      read: root.readText('note.txt'),
      entries: root.listDir(),
      granted: paths.granted(),
      writable: root.writable,
    });
  },
  '/crash': (req) => {
    const table: Record<string, { name: string }> = {};
    return Response.text(table[req.query.get('key') ?? 'missing'].name);
  },
  '/throw': () => {
    throw 'a string, not an Error';
  },
  '/wrong': () => ({ not: 'a response' }) as unknown as Response,
  '/print': (req) => {
    console.log('hello from typescript', { n: 1 });
    console.error('to stderr');
    return Response.redirect(req.link('/echo'));
  },
  '/flood': (req) => {
    const lines = Number(req.query.get('lines') ?? '1000');
    for (let i = 0; i < lines; i++) console.log(`line ${i}`);
    return Response.text('flooded');
  },
  '/hello': () => Response.html('<p>hello</p>'),
};

export function render(req: Request): Response {
  const route = ROUTES[req.path];
  if (route === undefined) throw new GuestError('not-found', `no route ${req.path}`);
  return route(req);
}
