"""Reports: revenue per month and per customer, from the invoices.

The demo app's screen written in Python. It only reads (`customers`,
`invoices`); the layout matches the Rust screens' (guests/ui).
"""

from rawalite_guest import NotFound, Request, Response, db, escape, export, session

SECTIONS = [
    ("/", "Dashboard"),
    ("/customers", "Customers"),
    ("/invoices", "Invoices"),
    ("/reports", "Reports"),
    ("/exports", "Exports"),
    ("/settings", "Settings"),
]


def render(req: Request) -> Response:
    if req.path != "/":
        raise NotFound("no such page")
    years = [r["year"] for r in db.query(
        "SELECT DISTINCT substr(issued_on, 1, 4) AS year FROM invoices ORDER BY year DESC")]
    year = req.query.text("year")
    if year not in years:
        year = ""
    # `?` with "" matches every year: one query for both views.
    where = "WHERE (? = '' OR substr(i.issued_on, 1, 4) = ?)"
    months = db.query(
        "SELECT substr(i.issued_on, 1, 7) AS month, count(*) AS invoices, "
        "       sum(i.total_cents) AS total, "
        "       coalesce(sum(CASE WHEN i.status = 'paid' THEN i.total_cents END), 0) AS paid "
        f"FROM invoices i {where} GROUP BY month ORDER BY month DESC",
        [year, year])
    customers = db.query(
        "SELECT c.id, c.name, count(*) AS invoices, sum(i.total_cents) AS total, "
        "       coalesce(sum(CASE WHEN i.status = 'open' THEN i.total_cents END), 0) AS open "
        f"FROM invoices i JOIN customers c ON c.id = i.customer_id {where} "
        "GROUP BY c.id ORDER BY total DESC, c.name LIMIT 50",
        [year, year])
    body = "".join([
        '<div class="heading"><h1>Reports</h1>',
        year_picker(req, years, year),
        "</div>",
        "<h2>Revenue per month</h2>",
        month_table(list(months)) if len(months) else '<p class="empty">No invoices yet.</p>',
        "<h2>Revenue per customer</h2>",
        customer_table(list(customers)) if len(customers) else '<p class="empty">No invoices yet.</p>',
    ])
    return page(req, "Reports", body)


def year_picker(req: Request, years, year: str) -> str:
    options = "".join(
        f'<option value="{escape(y)}"{" selected" if y == year else ""}>{escape(y)}</option>'
        for y in years)
    return (f'<form class="search" method="get" action="{escape(req.link("/"))}">'
            f'<select name="year"><option value="">All years</option>{options}</select>'
            '<button type="submit">Show</button></form>')


def month_table(months) -> str:
    top = max(m["total"] for m in months) or 1
    rows = "".join(
        f'<tr><td>{escape(m["month"])}</td><td class="num">{m["invoices"]}</td>'
        f'<td class="num">{money(m["total"])}</td><td class="num">{money(m["paid"])}</td>'
        f'<td><meter min="0" max="{top}" value="{m["total"]}">{percent(m["total"], top)}</meter></td></tr>'
        for m in months)
    total = sum(m["total"] for m in months)
    paid = sum(m["paid"] for m in months)
    count = sum(m["invoices"] for m in months)
    return ("<table><thead><tr><th>Month</th><th class=\"num\">Invoices</th>"
            "<th class=\"num\">Invoiced</th><th class=\"num\">Paid</th><th></th></tr></thead>"
            f"<tbody>{rows}</tbody><tfoot><tr class=\"total\"><td>Total</td><td class=\"num\">{count}</td>"
            f"<td class=\"num\">{money(total)}</td><td class=\"num\">{money(paid)}</td><td></td></tr></tfoot></table>")


def customer_table(customers) -> str:
    rows = "".join(
        f'<tr><td><a href="/customers/{c["id"]}">{escape(c["name"])}</a></td>'
        f'<td class="num">{c["invoices"]}</td><td class="num">{money(c["total"])}</td>'
        f'<td class="num">{money(c["open"])}</td></tr>'
        for c in customers)
    return ("<table><thead><tr><th>Customer</th><th class=\"num\">Invoices</th>"
            "<th class=\"num\">Invoiced</th><th class=\"num\">Open</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100:,}.{cents % 100:02}"


def percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%"


def page(req: Request, title: str, body: str) -> Response:
    user = session.current()
    nav = signout = ""
    if user is not None:
        links = "".join(
            f'<a href="{href}"{" class=\"active\"" if href == req.base else ""}>{label}</a>'
            for href, label in SECTIONS)
        nav = f"<nav>{links}</nav>"
        signout = ('<div class="account">'
                   f'<span class="who">{escape(user.display_name)}</span>'
                   '<a class="signout" href="/login/logout">Sign out</a></div>')
    return Response.html(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · RawaLite</title><link rel="stylesheet" href="/static/app.css">'
        f'</head><body><header class="top"><a class="brand" href="/">RawaLite</a>{nav}{signout}</header>'
        f"<main>{body}</main></body></html>")


WitWorld = export(render)
