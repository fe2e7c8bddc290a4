
        // db: the tables [guest.db] grants; parameters are bound, never spliced.
        let rows = db::query("SELECT count(*) AS n FROM customers", &[])?;
        let customers = rows.first().map_or(0, |r| r.int("n"));
        body.push_str(&format!("<p>{customers} customers in the database.</p>"));
