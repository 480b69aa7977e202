//! `spec.ttl`: how long a VirtualCluster lives, as the CRD's schema accepts
//! it (`^([0-9]+(s|m|h|d))+$`: `30m`, `2h`, `7d`, `1h30m`) and as the CLI and
//! the supervisor read it, so that the CLI refuses exactly what the
//! apiserver would, with the same words.

use std::time::Duration;

/// What the CRD's validation rule says of a TTL it refuses.
pub const MESSAGE: &str = "must be a duration like 30m, 2h or 1h30m";

/// Why a TTL cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("ttl {0:?} {MESSAGE}")]
    Grammar(String),
    #[error("ttl {0:?} is too long to be a duration")]
    TooLong(String),
}

/// The duration `ttl` stands for: one or more numbers each followed by a
/// unit, `s`, `m`, `h` or `d`, added up.
pub fn parse(ttl: &str) -> Result<Duration, TtlError> {
    let grammar = || TtlError::Grammar(ttl.to_owned());
    let too_long = || TtlError::TooLong(ttl.to_owned());
    if ttl.is_empty() {
        return Err(grammar());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in ttl.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(grammar()),
        };
        if number.is_empty() {
            return Err(grammar());
        }
        let value: u64 = number.parse().map_err(|_| too_long())?;
        number.clear();
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(too_long)?;
    }
    if !number.is_empty() {
        return Err(grammar());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn what_the_schema_accepts_is_read_and_nothing_else() {
        for (ttl, seconds) in [
            ("30m", 1800),
            ("2h", 7200),
            ("7d", 604_800),
            ("1h30m", 5400),
            ("90s", 90),
            ("0s", 0),
        ] {
            assert_eq!(parse(ttl), Ok(Duration::from_secs(seconds)), "{ttl}");
        }
        for ttl in ["", "2", "h", "2 hours", "2H", "1.5h", "-1h", "2hm", "1w"] {
            assert_eq!(parse(ttl), Err(TtlError::Grammar(ttl.to_owned())), "{ttl}");
        }
        assert_eq!(
            parse("99999999999999999999d"),
            Err(TtlError::TooLong("99999999999999999999d".to_owned()))
        );
        assert_eq!(
            parse("2 hours").unwrap_err().to_string(),
            "ttl \"2 hours\" must be a duration like 30m, 2h or 1h30m"
        );
    }
}
