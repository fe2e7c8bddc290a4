"""The hello page in Python, byte for byte the Rust `hello` guest's: the
`hello/python` benchmark puts the two side by side."""

from rawalite_guest import Request, Response, escape, export


def render(req: Request) -> Response:
    return Response.html(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Hello</title></head>\n'
        f"<body><h1>Hello from RawaLite</h1><p>{escape(req.method)} {escape(req.path)}</p></body></html>\n"
    )


WitWorld = export(render)
