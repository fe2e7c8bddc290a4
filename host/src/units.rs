//! Units the manifest is written in: sizes (`"50 MiB"`) and intervals
//! (`"6h"`). Below every other module: anything that reads a manifest
//! value may use them.

use bytesize::ByteSize;
use serde::Deserialize;
use std::fmt;

/// A duration written as a whole number and a unit: `90s`, `30m`, `6h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub std::time::Duration);

impl std::str::FromStr for Every {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is not a duration such as \"90s\", \"30m\", \"6h\" or \"1d\"");
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        match number.checked_mul(seconds) {
            Some(0) => Err(format!("`{text}`: the interval must be more than zero")),
            Some(secs) if secs <= 366 * 86_400 => Ok(Every(std::time::Duration::from_secs(secs))),
            _ => Err(format!("`{text}`: at most a year")),
        }
    }
}

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A size written as `"50 MiB"` (or a plain number of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"50 MiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse::<ByteSize>()
                    .map(|b| Size(b.0))
                    .map_err(|e| E::custom(format!("`{v}` is not a size such as \"50 MiB\": {e}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_intervals_read_with_their_unit() {
        use std::time::Duration;
        assert_eq!("90s".parse::<Every>(), Ok(Every(Duration::from_secs(90))));
        assert_eq!(
            "6h".parse::<Every>(),
            Ok(Every(Duration::from_secs(6 * 3600)))
        );
        assert_eq!(
            "1d".parse::<Every>(),
            Ok(Every(Duration::from_secs(86_400)))
        );
        for bad in [
            "",
            "h",
            "6",
            "6 hours",
            "-1h",
            "0s",
            "400d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Every>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_interval_text_parses_or_says_why(text in ".{0,24}") {
            if let Ok(Every(d)) = text.parse::<Every>() {
                proptest::prop_assert!(d.as_secs() > 0 && d.as_secs() <= 366 * 86_400);
            }
        }

        #[test]
        fn written_intervals_read_back(n in 1u64..1000, unit in proptest::sample::select(vec![("s", 1u64), ("m", 60), ("h", 3600)])) {
            let every: Every = format!("{n}{}", unit.0).parse().unwrap();
            proptest::prop_assert_eq!(every.0.as_secs(), n * unit.1);
        }
    }
}
