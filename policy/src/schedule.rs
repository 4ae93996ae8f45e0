//! When an agreement serves and how much: hours of service, weekdays, rate periods,
//! and the local clock they are read against.
//!
//! Hours and days are local to the gateway's configured time zone, a fixed UTC
//! offset: China Standard Time has had no daylight saving since 1991, so an offset
//! (default `+08:00`) names it exactly and needs no time-zone database.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day; `24:00` is allowed as the end of a window.
const DAY_MINUTES: u16 = 24 * 60;

/// Daily hours of service, `HH:MM-HH:MM` in local time. The end is exclusive; a
/// window whose end is before its start runs over midnight (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceHours {
    /// First minute of the day served.
    pub from: u16,
    /// First minute of the day no longer served.
    pub until: u16,
}

impl ServiceHours {
    /// Whether `minute` (minutes since local midnight) is served.
    pub fn contains(self, minute: u16) -> bool {
        if self.from < self.until {
            self.from <= minute && minute < self.until
        } else {
            minute >= self.from || minute < self.until
        }
    }
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minute = h * 60 + m;
    (m < 60 && minute <= DAY_MINUTES).then_some(minute)
}

impl FromStr for ServiceHours {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not a window like \"08:30-17:30\" (local time, HH:MM-HH:MM)");
        let (from, until) = s.split_once('-').ok_or_else(bad)?;
        let (from, until) = (
            parse_clock(from.trim()).ok_or_else(bad)?,
            parse_clock(until.trim()).ok_or_else(bad)?,
        );
        if from == until || from == DAY_MINUTES {
            return Err(format!(
                "{s:?} is an empty window; leave hours out to serve all day"
            ));
        }
        Ok(Self { from, until })
    }
}

impl fmt::Display for ServiceHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.from / 60,
            self.from % 60,
            self.until / 60,
            self.until % 60
        )
    }
}

/// Days of the week an agreement serves: a set of `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Days {
    /// Every day.
    pub const ALL: Days = Days(0x7f);

    /// Whether weekday `index` (0 = Monday) is served.
    pub fn contains(self, index: u8) -> bool {
        index < 7 && self.0 & (1 << index) != 0
    }

    /// The bit set, Monday the lowest bit.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The day names, Monday first.
    pub fn names(self) -> Vec<&'static str> {
        (0..7u8)
            .filter(|d| self.contains(*d))
            .map(|d| DAY_NAMES[usize::from(d)])
            .collect()
    }

    /// Build from day names; an unknown name is an error naming it.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut bits = 0u8;
        for n in names {
            let n = n.as_ref();
            let i = DAY_NAMES.iter().position(|d| *d == n).ok_or_else(|| {
                format!("{n:?} is not a day; use mon, tue, wed, thu, fri, sat, sun")
            })?;
            bits |= 1 << i;
        }
        if bits == 0 {
            return Err("name at least one day, or leave days out for every day".into());
        }
        Ok(Days(bits))
    }
}

/// How often a period repeats, for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One local calendar day.
    Day,
}

impl Period {
    fn suffix(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
            Period::Day => "day",
        }
    }

    /// Length in seconds (a local day is always 86,400 s at a fixed offset).
    pub fn seconds(self) -> i64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        }
    }
}

/// A per-operator rate limit, `N/s`, `N/min`, `N/h` or `N/day`, counted in fixed
/// windows (aligned to the local clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window.
    pub per: Period,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate like \"30/min\" (units: s, min, h, day)");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Period::Second,
            "min" | "minute" => Period::Minute,
            "h" | "hour" => Period::Hour,
            "d" | "day" => Period::Day,
            _ => return Err(bad()),
        };
        if limit == 0 {
            return Err(format!(
                "{s:?} allows nothing; use a deny agreement instead"
            ));
        }
        Ok(Self { limit, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.per.suffix())
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(ServiceHours);
serde_as_string!(Rate);

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Days::from_names(&names).map_err(serde::de::Error::custom)
    }
}

/// A time zone as a fixed UTC offset: `+08:00`, `-05:00` or `UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub FixedOffset);

/// China Standard Time, checked when the crate is compiled.
const CHINA_STANDARD_TIME: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("+08:00 is a valid offset"),
};

/// UTC, checked when the crate is compiled.
const UTC_OFFSET: FixedOffset = match FixedOffset::east_opt(0) {
    Some(offset) => offset,
    None => panic!("+00:00 is a valid offset"),
};

impl Default for TimeZone {
    /// China Standard Time, `+08:00`.
    fn default() -> Self {
        Self(CHINA_STANDARD_TIME)
    }
}

impl FromStr for TimeZone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if matches!(s, "UTC" | "Z" | "utc") {
            return Ok(TimeZone(UTC_OFFSET));
        }
        let bad = || format!("{s:?} is not a UTC offset like \"+08:00\" (or \"UTC\")");
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let minutes = i32::from(parse_clock(rest).ok_or_else(bad)?);
        if minutes > 14 * 60 {
            return Err(bad());
        }
        FixedOffset::east_opt(sign * minutes * 60)
            .map(TimeZone)
            .ok_or_else(bad)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A moment as the policy reads it: UTC for validity windows, local weekday and
/// minute for hours of service, local date for daily quotas.
#[derive(Debug, Clone)]
pub struct Clock {
    /// The moment.
    pub at: DateTime<Utc>,
    /// The same moment in the configured zone.
    pub local: DateTime<FixedOffset>,
}

impl Clock {
    /// Read `at` in `zone`.
    pub fn new(at: DateTime<Utc>, zone: TimeZone) -> Self {
        Self {
            at,
            local: at.with_timezone(&zone.0),
        }
    }

    /// Weekday, 0 = Monday.
    pub fn weekday(&self) -> u8 {
        // num_days_from_monday is 0..=6.
        u8::try_from(self.local.weekday().num_days_from_monday()).unwrap_or(0)
    }

    /// Minutes since local midnight.
    pub fn minute(&self) -> u16 {
        u16::try_from(self.local.hour() * 60 + self.local.minute()).unwrap_or(0)
    }

    /// Local calendar date, `YYYY-MM-DD`: the window of a daily quota.
    pub fn local_date(&self) -> String {
        self.local.format("%Y-%m-%d").to_string()
    }

    /// Human form: `Tue 2026-06-02 09:15 +08:00`.
    pub fn describe(&self) -> String {
        self.local.format("%a %Y-%m-%d %H:%M %:z").to_string()
    }

    /// The fixed window of `period` this moment falls in, as a stable key, and the
    /// UTC second at which that window ends.
    pub fn window(&self, period: Period) -> (String, i64) {
        let offset = i64::from(self.local.offset().local_minus_utc());
        let local_secs = self.at.timestamp() + offset;
        let len = period.seconds();
        let index = local_secs.div_euclid(len);
        let ends = (index + 1) * len - offset;
        let key = match period {
            Period::Day => self.local_date(),
            _ => format!("{}{}", period.suffix(), index),
        };
        (key, ends)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn hours_parse_and_wrap() {
        let day: ServiceHours = "08:30-17:30".parse().unwrap();
        assert!(day.contains(8 * 60 + 30));
        assert!(!day.contains(17 * 60 + 30));
        assert_eq!(day.to_string(), "08:30-17:30");
        let night: ServiceHours = "22:00-06:00".parse().unwrap();
        assert!(night.contains(23 * 60));
        assert!(night.contains(60));
        assert!(!night.contains(12 * 60));
        let all_evening: ServiceHours = "18:00-24:00".parse().unwrap();
        assert!(all_evening.contains(23 * 60 + 59));
        for bad in [
            "8:30-17:30",
            "08:30",
            "08:30-08:30",
            "25:00-26:00",
            "08:60-09:00",
        ] {
            assert!(bad.parse::<ServiceHours>().is_err(), "{bad}");
        }
    }

    #[test]
    fn days_and_rates() {
        let d = Days::from_names(&["mon", "fri"]).unwrap();
        assert!(d.contains(0) && d.contains(4) && !d.contains(5));
        assert_eq!(d.names(), ["mon", "fri"]);
        assert!(Days::from_names(&["funday"])
            .unwrap_err()
            .contains("funday"));
        let r: Rate = "30/min".parse().unwrap();
        assert_eq!((r.limit, r.per), (30, Period::Minute));
        assert_eq!(r.to_string(), "30/min");
        assert!("0/min".parse::<Rate>().is_err());
        assert!("30/fortnight".parse::<Rate>().is_err());
    }

    #[test]
    fn clock_is_local() {
        let tz: TimeZone = "+08:00".parse().unwrap();
        // 2026-06-01 is a Monday; 20:30 UTC is 04:30 Tuesday in Beijing.
        let c = Clock::new(Utc.with_ymd_and_hms(2026, 6, 1, 20, 30, 0).unwrap(), tz);
        assert_eq!(c.weekday(), 1);
        assert_eq!(c.minute(), 4 * 60 + 30);
        assert_eq!(c.local_date(), "2026-06-02");
        let (key, ends) = c.window(Period::Day);
        assert_eq!(key, "2026-06-02");
        assert_eq!(
            ends,
            Utc.with_ymd_and_hms(2026, 6, 2, 16, 0, 0)
                .unwrap()
                .timestamp()
        );
        let (_, ends) = c.window(Period::Minute);
        assert_eq!(
            ends,
            Utc.with_ymd_and_hms(2026, 6, 1, 20, 31, 0)
                .unwrap()
                .timestamp()
        );
        assert!("Asia/Shanghai".parse::<TimeZone>().is_err());
        assert_eq!("UTC".parse::<TimeZone>().unwrap().0.local_minus_utc(), 0);
        assert_eq!(TimeZone::default().0.local_minus_utc(), 8 * 3600);
    }
}
