
  // db: the tables [guest.db] grants; parameters are bound, never spliced.
  const { n } = db.query<{ n: number }>('SELECT count(*) AS n FROM customers').first()!;
  body += `<p>${n} customers in the database.</p>`;
