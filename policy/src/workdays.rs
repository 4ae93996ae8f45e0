//! Review deadlines in working days: Monday to Friday in the gateway's time zone,
//! less the configured public holidays, plus the weekend days worked in their place
//! (China moves working days around its holidays, 调休).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike as _, Days as ChronoDays, NaiveDate, Utc, Weekday};

use crate::TimeZone;

/// The working-day calendar review deadlines are counted in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingDays {
    /// Days off although Monday to Friday.
    pub holidays: BTreeSet<NaiveDate>,
    /// Days worked although Saturday or Sunday.
    pub working_weekends: BTreeSet<NaiveDate>,
    /// The zone whose local dates count.
    pub time_zone: TimeZone,
}

impl WorkingDays {
    /// Whether `day` is a working day.
    pub fn is_working(&self, day: NaiveDate) -> bool {
        if self.working_weekends.contains(&day) {
            return true;
        }
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&day)
    }

    /// The review deadline of something submitted at `at`: the last second of the
    /// `days`-th working day after the local day of `at` (that day itself does not
    /// count, so a request filed late on Friday gets as many full days as one filed
    /// early on Monday). `days = 0` is the end of the day it was filed.
    pub fn deadline(&self, at: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        let tz = self.time_zone.0;
        let mut day = at.with_timezone(&tz).date_naive();
        let mut left = days;
        // A calendar holds fewer than 400 days off a year: bounded however it is set.
        while left > 0 {
            let Some(next) = day.checked_add_days(ChronoDays::new(1)) else {
                break;
            };
            day = next;
            if self.is_working(day) {
                left -= 1;
            }
        }
        let end = day
            .and_hms_opt(23, 59, 59)
            .and_then(|t| t.and_local_timezone(tz).single())
            .map(|t| t.with_timezone(&Utc));
        end.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekends_and_holidays_do_not_count() {
        let cal = WorkingDays::default(); // +08:00
                                          // Friday 2026-06-05 17:00 in Beijing; 1 working day: Monday 06-08 ends it.
        let friday = Utc.with_ymd_and_hms(2026, 6, 5, 9, 0, 0).unwrap();
        assert_eq!(
            cal.deadline(friday, 1),
            Utc.with_ymd_and_hms(2026, 6, 8, 15, 59, 59).unwrap()
        );
        // 10 working days: two full weeks.
        assert_eq!(
            cal.deadline(friday, 10),
            Utc.with_ymd_and_hms(2026, 6, 19, 15, 59, 59).unwrap()
        );
        assert_eq!(
            cal.deadline(friday, 0),
            Utc.with_ymd_and_hms(2026, 6, 5, 15, 59, 59).unwrap()
        );
        // Dragon Boat Festival on Friday 06-19 moves the deadline to Monday 06-22;
        // working Sunday 06-07 brings it back a day.
        let mut cal = WorkingDays::default();
        cal.holidays.insert(date("2026-06-19"));
        assert_eq!(
            cal.deadline(friday, 10),
            Utc.with_ymd_and_hms(2026, 6, 22, 15, 59, 59).unwrap()
        );
        cal.working_weekends.insert(date("2026-06-07"));
        assert_eq!(
            cal.deadline(friday, 10),
            Utc.with_ymd_and_hms(2026, 6, 18, 15, 59, 59).unwrap()
        );
    }

    #[test]
    fn the_local_date_counts_not_the_utc_one() {
        let cal = WorkingDays::default();
        // Saturday 2026-06-06 00:30 in Beijing is still Friday in UTC.
        let saturday_local = Utc.with_ymd_and_hms(2026, 6, 5, 16, 30, 0).unwrap();
        assert_eq!(
            cal.deadline(saturday_local, 1),
            Utc.with_ymd_and_hms(2026, 6, 8, 15, 59, 59).unwrap()
        );
        let utc = WorkingDays {
            time_zone: "UTC".parse().unwrap(),
            ..WorkingDays::default()
        };
        assert_eq!(
            utc.deadline(saturday_local, 1),
            Utc.with_ymd_and_hms(2026, 6, 8, 23, 59, 59).unwrap()
        );
    }
}
