//! Unix seconds as UTC calendar time, for what people read (session
//! lists) and what sorts by name (backup files).

/// `2026-11-26 18:30:00Z`.
pub fn readable(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// `20261126T183000Z`: sorts by time, safe in a file name.
pub fn compact(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2026-11-26`: a day count since 1970-01-01.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-26T18:30:00Z`, with `.ffffff` when there are microseconds:
/// microseconds since 1970-01-01.
pub fn iso(micros: i64) -> String {
    let (secs, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, mi, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let fraction = if fraction == 0 {
        String::new()
    } else {
        format!(".{fraction:06}")
    };
    format!("{}T{h:02}:{mi:02}:{s:02}{fraction}Z", date(days))
}

fn parts(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = secs.max(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The day count since 1970-01-01 of a proleptic Gregorian date (the
/// inverse of [`civil_from_days`], Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn times_read_as_calendar_dates() {
        assert_eq!(readable(0), "1970-01-01 00:00:00Z");
        assert_eq!(readable(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(readable(1_795_717_800), "2026-11-26 18:30:00Z");
        assert_eq!(compact(1_795_717_800), "20261126T183000Z");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(iso(1_795_717_800_000_000), "2026-11-26T18:30:00Z");
        assert_eq!(iso(1_795_717_800_000_250), "2026-11-26T18:30:00.000250Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999999Z");
    }

    proptest::proptest! {
        /// Names sort as the times they stand for.
        #[test]
        fn compact_names_sort_by_time(a in 0i64..4_000_000_000, b in 0i64..4_000_000_000) {
            proptest::prop_assert_eq!(compact(a).cmp(&compact(b)), a.cmp(&b));
        }
    }
}
