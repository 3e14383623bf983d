//! Exact parsing of Kubernetes quantities (`1Gi`, `500m`, `1.5`, `2e3`), so that sizes can be compared
//! (storage may grow, never shrink) and so that the API server's canonical form (`1024Mi` → `1Gi`) is not
//! mistaken for a change.

use std::fmt;

/// A quantity in exact nano-units (value × 10⁹), wide enough for every valid Kubernetes quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

/// Why a string is not a Kubernetes quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity (expected e.g. 1Gi, 512Mi, 500m, 2)")]
pub struct QuantityError(pub String);

impl Quantity {
    /// The value in nano-units.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}n", self.0)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input).ok_or_else(|| QuantityError(input.to_string()))
    }
}

const NANO: i128 = 1_000_000_000;

fn parse(input: &str) -> Option<Quantity> {
    let s = input.trim();
    if s.is_empty() || s != input {
        return None;
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    // Kubernetes keeps at most nano precision; more fractional digits round up, as the API server does.
    let mut value: i128 = 0;
    for c in int_part.bytes() {
        value = value.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    value = value.checked_mul(NANO)?;
    let mut scale = NANO / 10;
    let mut rounded_up = false;
    for c in frac_part.bytes() {
        let digit = i128::from(c - b'0');
        if scale == 0 {
            rounded_up |= digit != 0;
            continue;
        }
        value += digit * scale;
        scale /= 10;
    }
    if rounded_up {
        value += 1;
    }
    let value = apply_suffix(value, suffix)?;
    Some(Quantity(if negative { -value } else { value }))
}

fn apply_suffix(value: i128, suffix: &str) -> Option<i128> {
    let binary = |power: u32| value.checked_mul(1024_i128.checked_pow(power)?);
    let decimal = |exp: i32| -> Option<i128> {
        if exp >= 0 {
            value.checked_mul(10_i128.checked_pow(exp.unsigned_abs())?)
        } else {
            let divisor = 10_i128.checked_pow(exp.unsigned_abs())?;
            // round up like the API server does for precision it cannot keep
            Some((value + divisor - 1).div_euclid(divisor))
        }
    };
    match suffix {
        "" => Some(value),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            if exponent.is_empty() {
                return None;
            }
            decimal(exponent.parse::<i32>().ok()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1Ki").nanos(), 1024 * NANO);
        assert_eq!(q("1k").nanos(), 1000 * NANO);
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert_eq!(q("2e3"), q("2k"));
        assert_eq!(q("1E"), q("1e18"));
        assert_eq!(q("100n").nanos(), 100);
    }

    #[test]
    fn ordering_follows_value() {
        assert!(q("2Gi") > q("1Gi"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("-1").is_negative());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "lots", "1GB", "1 Gi", "Gi", ".", "1e", "--1", "1.2.3", " 1",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn excess_precision_rounds_up() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1.5n").nanos(), 2);
    }
}
