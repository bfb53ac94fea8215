//! Values of the operator-to-agent contract with a meaning beyond their text, parsed once when
//! a bundle is read. A bundle with a value outside its type is refused as a whole, naming
//! the value, instead of the agent falling back to a default it was never told.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Permission bits of a file, written as octal text (`0600`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner read and write.
    pub const OWNER_RW: FileMode = FileMode(0o600);

    /// The bits, for `chmod`.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// 3 or 4 octal digits; `None` for anything else.
    fn parse(text: &str) -> Option<FileMode> {
        let octal =
            (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !octal {
            return None;
        }
        u32::from_str_radix(text, 8).ok().map(FileMode)
    }
}

/// A value that is not what its field holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {found:?} is not valid: {expected}")]
pub struct ContractError {
    pub what: &'static str,
    pub found: String,
    pub expected: &'static str,
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// When a token is replaced: a share of its lifetime before expiry (`20%`), or a duration
/// before expiry (`90s`, `10m`, `1h`), kept in the unit it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefreshBefore {
    /// 1 to 99 percent of the lifetime.
    Percent(u8),
    /// `amount` of `unit` (`s`, `m` or `h`); never zero.
    Duration { amount: u32, unit: TimeUnit },
}

/// The unit of a [`RefreshBefore::Duration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
}

impl TimeUnit {
    fn seconds(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1,
            TimeUnit::Minutes => 60,
            TimeUnit::Hours => 3600,
        }
    }

    fn suffix(self) -> char {
        match self {
            TimeUnit::Seconds => 's',
            TimeUnit::Minutes => 'm',
            TimeUnit::Hours => 'h',
        }
    }
}

impl RefreshBefore {
    /// The default: a fifth of the lifetime.
    pub const DEFAULT: RefreshBefore = RefreshBefore::Percent(20);

    /// Seconds before expiry for a token living `lifetime` seconds.
    pub fn seconds(self, lifetime: i64) -> i64 {
        match self {
            // In 128 bits: a lifetime near i64::MAX times the percentage does not fit in
            // 64, while the result, at most 99% of the lifetime, always does.
            RefreshBefore::Percent(p) => (i128::from(lifetime) * i128::from(p) / 100) as i64,
            RefreshBefore::Duration { amount, unit } => i64::from(amount) * unit.seconds(),
        }
    }

    /// `1%` to `99%`, or a positive count of `s`, `m` or `h`; `None` for anything else.
    fn parse(text: &str) -> Option<RefreshBefore> {
        // Digits only, at most 9 of them (so they fit in a u32), and no leading zero, as the
        // CRD's rule says: `02h` would be read as `2h` and written back differently from what
        // was given.
        let number = |s: &str| {
            let plain = !s.is_empty()
                && s.len() <= 9
                && !s.starts_with('0')
                && s.bytes().all(|b| b.is_ascii_digit());
            if plain { s.parse::<u32>().ok() } else { None }
        };
        if let Some(p) = text.strip_suffix('%') {
            let percent = u8::try_from(number(p)?).ok()?;
            return (1..=99)
                .contains(&percent)
                .then_some(RefreshBefore::Percent(percent));
        }
        let unit = match text.chars().last()? {
            's' => TimeUnit::Seconds,
            'm' => TimeUnit::Minutes,
            'h' => TimeUnit::Hours,
            _ => return None,
        };
        let amount = number(&text[..text.len() - 1])?;
        (amount > 0).then_some(RefreshBefore::Duration { amount, unit })
    }
}

impl fmt::Display for RefreshBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshBefore::Percent(p) => write!(f, "{p}%"),
            RefreshBefore::Duration { amount, unit } => write!(f, "{amount}{}", unit.suffix()),
        }
    }
}

/// The text form of a contract value: `FromStr` through the type's `parse`, refusing other
/// text with a [`ContractError`] that names the value, and serde as that text through
/// `FromStr` and `Display`.
macro_rules! text_form {
    ($type:ty, what: $what:literal, expected: $expected:literal) => {
        impl FromStr for $type {
            type Err = ContractError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                <$type>::parse(text).ok_or_else(|| ContractError {
                    what: $what,
                    found: text.to_string(),
                    expected: $expected,
                })
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_form!(
    FileMode,
    what: "file mode",
    expected: "3 or 4 octal digits, such as 0600"
);
text_form!(
    RefreshBefore,
    what: "refreshBeforeExpiry",
    expected: "a percentage from 1% to 99% or a duration such as 90s, 10m or 1h"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_are_octal_and_print_as_they_were_given() {
        for (text, bits) in [
            ("0600", 0o600),
            ("0644", 0o644),
            ("600", 0o600),
            ("0400", 0o400),
        ] {
            let mode: FileMode = text.parse().unwrap();
            assert_eq!(mode.bits(), bits, "{text}");
        }
        assert_eq!(FileMode::OWNER_RW.to_string(), "0600");
        for bad in [
            "",
            "0",
            "06",
            "0800",
            "0x600",
            "rw-------",
            "-600",
            "06000",
            "60 0",
            "٠٦٠٠",
        ] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refresh_points_parse_exactly_and_keep_their_form() {
        for (text, seconds) in [
            ("20%", 720),
            ("1%", 36),
            ("99%", 3564),
            ("90s", 90),
            ("10m", 600),
            ("1h", 3600),
        ] {
            let refresh: RefreshBefore = text.parse().unwrap();
            assert_eq!(refresh.seconds(3600), seconds, "{text}");
            assert_eq!(refresh.to_string(), text);
        }
        for bad in [
            "",
            "%",
            "0%",
            "100%",
            "120%",
            "20 %",
            "020%",
            "+20%",
            "-5m",
            "0s",
            "10",
            "10d",
            "m",
            "1.5h",
            " 10m",
            "10m ",
            "soon",
            "99999999999s",
        ] {
            let err = bad.parse::<RefreshBefore>().unwrap_err();
            assert!(err.to_string().contains("refreshBeforeExpiry"), "{bad:?}");
        }
    }

    #[test]
    fn a_duration_with_a_leading_zero_is_refused_as_the_crd_refuses_it() {
        // The bundle_parse fuzz target's finding, minimised: `02h` parsed and printed `2h`.
        for bad in ["02h", "012h", "00s", "010m"] {
            assert!(bad.parse::<RefreshBefore>().is_err(), "{bad:?}");
        }
        assert_eq!("20h".parse::<RefreshBefore>().unwrap().to_string(), "20h");
    }

    #[test]
    fn a_percentage_of_the_longest_lifetimes_does_not_overflow() {
        // The kubeconfig_writer fuzz target's finding, minimised: 20% of this lifetime
        // overflowed i64 before the division.
        assert_eq!(
            RefreshBefore::Percent(20).seconds(7_803_172_840_524_546_049),
            1_560_634_568_104_909_209
        );
        assert_eq!(
            RefreshBefore::Percent(99).seconds(i64::MAX),
            9_131_138_316_486_228_048
        );
        assert_eq!(
            RefreshBefore::Percent(99).seconds(i64::MIN),
            -9_131_138_316_486_228_049
        );
    }

    #[test]
    fn a_manifest_value_outside_its_type_fails_to_decode_naming_it() {
        let err = serde_json::from_str::<FileMode>("\"0999\"").unwrap_err();
        assert!(err.to_string().contains("file mode \"0999\""), "{err}");
        let err = serde_json::from_str::<RefreshBefore>("\"later\"").unwrap_err();
        assert!(
            err.to_string().contains("refreshBeforeExpiry \"later\""),
            "{err}"
        );
        let back: RefreshBefore = serde_json::from_str("\"10m\"").unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), "\"10m\"");
    }
}
