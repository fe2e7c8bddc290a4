// The hello page in TypeScript, byte for byte the Rust `hello` guest's: the
// `hello/typescript` benchmark puts the two side by side.
import { Request, Response, escape } from 'rawalite-guest';

export function render(req: Request): Response {
  return Response.html(
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Hello</title></head>\n' +
      `<body><h1>Hello from RawaLite</h1><p>${escape(req.method)} ${escape(req.path)}</p></body></html>\n`,
  );
}
