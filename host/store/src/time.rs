//! Calendar arithmetic on UTC milliseconds, without a date library: the
//! stores only need days, hours and months, and both SQL dialects receive
//! them as plain literals.

const MS_PER_DAY: i64 = 86_400_000;

/// (year, month 1-12, day 1-31) of a day number counted from 1970-01-01.
/// Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number (since 1970-01-01) of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn day_number(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// `YYYY-MM-DD` of a timestamp: the `day` column of every rollup.
pub fn day_string(ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_number(ms));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` of the Monday starting the (ISO) week of a timestamp, as
/// ClickHouse's `toMonday`.
pub fn week_start_string(ms: i64) -> String {
    let days = day_number(ms);
    // 1970-01-01 was a Thursday: (days + 3) mod 7 counts from Monday.
    let (y, m, d) = civil_from_days(days - (days + 3).rem_euclid(7));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-01` of a timestamp's month, as ClickHouse's `toStartOfMonth`.
pub fn month_start_string(ms: i64) -> String {
    let (y, m, _) = civil_from_days(day_number(ms));
    format!("{y:04}-{m:02}-01")
}

/// `YYYY-01-01` of a timestamp's year, as ClickHouse's `toStartOfYear`.
pub fn year_start_string(ms: i64) -> String {
    let (y, _, _) = civil_from_days(day_number(ms));
    format!("{y:04}-01-01")
}

/// `YYYY-MM-DD HH:00:00` of a timestamp: the `hour` column.
pub fn hour_string(ms: i64) -> String {
    let h = ms.rem_euclid(MS_PER_DAY) / 3_600_000;
    format!("{} {h:02}:00:00", day_string(ms))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a timestamp: ClickHouse `DateTime` text.
pub fn datetime_string(ms: i64) -> String {
    let secs = ms.rem_euclid(MS_PER_DAY) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        day_string(ms),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `YYYYMM`: the monthly partition a timestamp falls in.
pub fn month_id(ms: i64) -> u32 {
    let (y, m, _) = civil_from_days(day_number(ms));
    (y as u32) * 100 + m
}

/// First millisecond of the month after partition `month` (`YYYYMM`).
pub fn month_end_ms(month: u32) -> i64 {
    let (y, m) = ((month / 100) as i64, month % 100);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) * MS_PER_DAY
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(day_string(0), "1970-01-01");
        // 2024-02-29T23:59:59.999Z, a leap day.
        assert_eq!(day_string(1_709_251_199_999), "2024-02-29");
        assert_eq!(hour_string(1_709_251_199_999), "2024-02-29 23:00:00");
        assert_eq!(month_id(1_709_251_199_999), 202402);
        assert_eq!(datetime_string(1_709_251_199_999), "2024-02-29 23:59:59");
        assert_eq!(month_end_ms(202402), 1_709_251_200_000);
        // 2024-02-29 was a Thursday; 2024-03-04 a Monday.
        assert_eq!(week_start_string(1_709_251_199_999), "2024-02-26");
        let monday = days_from_civil(2024, 3, 4) * MS_PER_DAY;
        assert_eq!(week_start_string(monday), "2024-03-04");
        assert_eq!(week_start_string(monday - 1), "2024-02-26");
        assert_eq!(week_start_string(0), "1969-12-29");
        assert_eq!(month_start_string(1_709_251_199_999), "2024-02-01");
        assert_eq!(year_start_string(1_709_251_199_999), "2024-01-01");
        assert_eq!(
            month_end_ms(202412),
            days_from_civil(2025, 1, 1) * MS_PER_DAY
        );
    }
}
