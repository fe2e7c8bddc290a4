

def render(req: Request) -> Response:
    if req.path != "/":
        raise NotFound("no such page")
    name = req.query.get("name", "world")
    body = f"<h1>Hello, {escape(name)}!</h1>"
    # capabilities
    return Response.html(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>@NAME@</title></head>"
        f"<body>{body}</body></html>"
    )


WitWorld = export(render)
