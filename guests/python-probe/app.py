"""The Python test instrument: each route exercises one part of the Python
SDK so the host's tests can check it from outside (tests/api/python.rs)."""

# Taken before the SDK is imported: the SDK must still keep it fresh.
from random import randint as early_randint

import os
import random
import secrets
import time

from rawalite_guest import NotFound, Request, Response, db, escape, export, paths, session


def render(req: Request) -> Response:
    route = ROUTES.get(req.path)
    if route is None:
        raise NotFound(f"no route {req.path}")
    return route(req)


def echo(req: Request) -> Response:
    form = req.form()
    return Response.json({
        "method": req.method,
        "base": req.base,
        "path": req.path,
        "query": req.query.get_all("q"),
        "name": req.query.text("name"),
        "form": form.pairs,
        "post": req.is_post,
        "agent": req.header("User-Agent"),
        "link": req.link("/x"),
    })


def escaped(req: Request) -> Response:
    return Response.text(escape(req.query.get("text", "")))


def values(req: Request) -> Response:
    # Every kind of value there and back through the packed rows.
    row = db.query("SELECT ? AS n, ? AS i, ? AS r, ? AS t, ? AS b, ? AS yes",
                   [None, -(2**63), 1.5, "grüße <&>", b"\x00\xff", True]).first()
    return Response.json({k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()})


def now(req: Request) -> Response:
    # SQLite's clock and random numbers, through db.
    row = db.query("SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now') AS now, random() AS r").first()
    return Response.json(row)


def fresh(req: Request) -> Response:
    # The interpreter's own clock and entropy: the host's, on every request.
    return Response.json({
        "time": time.time(),
        "time_ns": time.time_ns(),
        # First: nothing else in this request has reseeded `random` yet.
        "early": early_randint(0, 2**62),
        "random": random.random(),
        "urandom": os.urandom(16).hex(),
        "token": secrets.token_hex(16),
        "system": random.SystemRandom().random(),
    })


def customers(req: Request) -> Response:
    rows = db.query("SELECT id, name FROM customers ORDER BY id LIMIT ?", [int(req.query.get("limit", "10"))])
    return Response.json({"columns": rows.columns, "count": len(rows), "names": [r["name"] for r in rows]})


def denied(req: Request) -> Response:
    db.query("SELECT * FROM invoices")
    return Response.text("unreachable")


def user(req: Request) -> Response:
    who = session.current()
    return Response.json({"user": who.username if who else None, "admin": session.has_role("admin")})


def files(req: Request) -> Response:
    root = paths.open("scratch")
    root.write("note.txt", req.query.get("text", "hi"))
    listing = root.list_dir()
    return Response.json({"read": root.read("note.txt").decode(), "entries": listing,
                          "granted": paths.granted(), "writable": root.writable})


def crash(req: Request) -> Response:
    return {"not": "a response"}[req.query.get("key", "missing")]


def flood(req: Request) -> Response:
    for i in range(int(req.query.get("lines", "1000"))):
        print(f"line {i}")
    return Response.text("flooded")


def wrong(req: Request):
    return {"not": "a response"}


def printed(req: Request) -> Response:
    print("hello from python")
    return Response.redirect(req.link("/echo"))


ROUTES = {
    "/echo": echo,
    "/escape": escaped,
    "/values": values,
    "/customers": customers,
    "/now": now,
    "/fresh": fresh,
    "/denied": denied,
    "/user": user,
    "/files": files,
    "/crash": crash,
    "/print": printed,
    "/wrong": wrong,
    "/flood": flood,
}

WitWorld = export(render)
