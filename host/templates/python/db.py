
    # db: the tables [guest.db] grants; parameters are bound, never spliced.
    customers = db.query("SELECT count(*) AS n FROM customers").first()["n"]
    body += f"<p>{customers} customers in the database.</p>"
