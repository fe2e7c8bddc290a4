use super::*;

fn checked(sql: &str) -> Result<Arc<Checked>, Error> {
    Ok(Arc::new(Checked {
        sql: sql.to_owned(),
        writes: false,
        params: 0,
        returns_id: false,
        tables: "customers".into(),
    }))
}

#[test]
fn the_checked_cache_is_bounded_by_count_and_by_bytes() {
    let mut cache = CheckedCache::default();
    for i in 0..1000 {
        let sql = format!("SELECT {i} FROM customers");
        cache.insert(&sql, checked(&sql));
        assert!(cache.statements.len() <= CHECKED);
    }
    let mut cache = CheckedCache::default();
    for i in 0..1000 {
        let sql = format!(
            "SELECT {i}, '{}' FROM customers",
            "x".repeat(CHECKED_SQL - 40)
        );
        cache.insert(&sql, checked(&sql));
        assert!(cache.bytes <= CHECKED_BYTES, "{} bytes", cache.bytes);
        let counted: usize = cache
            .statements
            .iter()
            .map(|(sql, c)| sql.len() + c.as_ref().map_or(0, |c| c.sql.len() + c.tables.len()))
            .sum();
        assert_eq!(cache.bytes, counted);
    }
    assert!(cache.statements.len() < CHECKED);
}
