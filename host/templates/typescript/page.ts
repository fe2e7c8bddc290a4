
export function render(req: Request): Response {
  if (req.path !== '/') {
    throw new GuestError('not-found', 'no such page');
  }
  const name = req.query.get('name') ?? 'world';
  let body = `<h1>Hello, ${escape(name)}!</h1>`;
  // capabilities
  return Response.html(
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' +
      `<title>@NAME@</title></head><body>${body}</body></html>`,
  );
}
