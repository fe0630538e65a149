//! Puppet-style durations: `5y`, `90d`, `12h`, `30m`, `45s`, or plain seconds.

use time::Duration;

use super::CaError;

/// Parses a Puppet duration (`y` = 365 days). Refuses zero, negative and absurd values.
pub fn parse(s: &str) -> Result<Duration, CaError> {
    let s = s.trim();
    let bad = || {
        CaError::Invalid(format!(
            "invalid duration '{s}': use a number with a unit y, d, h, m or s (e.g. 5y, 90d)"
        ))
    };
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        Some(_) => (s, 's'),
        None => return Err(bad()),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let secs_per = match unit {
        'y' => 365 * 86_400,
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(bad)?;
    // puppetserver caps ca-ttl at 50 years.
    if secs <= 0 || secs > 50 * 365 * 86_400 {
        return Err(CaError::Invalid(format!(
            "invalid duration '{s}': must be more than 0 and at most 50 years"
        )));
    }
    Ok(Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("5y").ok(), Some(Duration::days(5 * 365)));
        assert_eq!(parse("90d").ok(), Some(Duration::days(90)));
        assert_eq!(parse("3600").ok(), Some(Duration::hours(1)));
        assert_eq!(parse("2m").ok(), Some(Duration::minutes(2)));
        for bad in ["", "y", "0d", "-1d", "5w", "51y", "99999999999999999999y", "1.5d"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
