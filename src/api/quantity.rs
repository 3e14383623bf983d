//! Exact parsing of Kubernetes quantities (`1Gi`, `500m`, `1.5`, `2e3`), so that sizes can be compared
//! (storage may grow, never shrink) and so that the API server's canonical form (`1024Mi` → `1Gi`, `0.0001`
//! → `1m`) is not mistaken for a change.
//!
//! The arithmetic is checked throughout: a value the API server cannot represent is reported as too large,
//! never wrapped around into a small or negative one.

use std::fmt;

/// A quantity in exact nano-units (value × 10⁹). Only values the API server can store are constructed: the
/// magnitude is below 2⁶³-1 units (see [`QuantityError::TooLarge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

/// Why a string is not a usable Kubernetes quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not in the quantity syntax at all.
    #[error("{0:?} is not a Kubernetes quantity (expected e.g. 1Gi, 512Mi, 500m, 2)")]
    Invalid(String),
    /// Well-formed, but at or above 2⁶³-1 units: the API server silently caps such values (`8Ei` is stored
    /// as `9223372036854775807`), so the object would not get what it asks for.
    #[error("{0:?} is too large: a Kubernetes quantity must be below 2^63-1 (just under 8Ei)")]
    TooLarge(String),
    /// More significant digits than exact 128-bit arithmetic can hold; no real quantity needs them.
    #[error("{0:?} has too many digits: at most {MAX_DIGITS} significant digits are supported")]
    TooManyDigits(String),
}

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;
/// Nano-units per milli-unit: the precision the API server keeps in resource lists (see [`Quantity::canonical`]).
const MILLI_IN_NANOS: i128 = 1_000_000;
/// The exclusive upper bound of a quantity's magnitude, in nano-units: 2⁶³-1 units, the API server's cap.
const LIMIT: i128 = i64::MAX as i128 * NANO;
/// Significant digits that always fit in a `u128` (10³⁸ < 2¹²⁸).
const MAX_DIGITS: usize = 38;

impl Quantity {
    /// The largest magnitude the API server represents (2⁶³-1 units), as the CEL quantity literal used by the
    /// CRD's admission rules; every accepted quantity is strictly below it.
    pub const CEL_LIMIT: &'static str = "9223372036854775807";

    /// The value in nano-units.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The value the API server stores for this quantity in a resource list (container resources, claim
    /// requests): core/v1 defaulting rounds every `ResourceList` entry up, away from zero, to milli precision
    /// (`SetDefaults_ResourceList`, `Quantity.RoundUp(-3)` in k8s.io/apimachinery), so `0.0001` is stored as
    /// `1m`. Compare desired with live quantities in this form, or a value finer than a milli looks like a
    /// change forever.
    pub fn canonical(self) -> Quantity {
        let remainder = self.0 % MILLI_IN_NANOS;
        if remainder == 0 {
            return self;
        }
        // Away from zero; cannot overflow: |self| < LIMIT, which is a multiple of a milli.
        Quantity(self.0 - remainder + remainder.signum() * MILLI_IN_NANOS)
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
        match parse(input) {
            Ok(q) => Ok(q),
            Err(Problem::Invalid) => Err(QuantityError::Invalid(input.to_string())),
            Err(Problem::TooLarge) => Err(QuantityError::TooLarge(input.to_string())),
            Err(Problem::TooManyDigits) => Err(QuantityError::TooManyDigits(input.to_string())),
        }
    }
}

/// [`QuantityError`] without the input, for the parser's internals.
enum Problem {
    Invalid,
    TooLarge,
    TooManyDigits,
}

/// The suffix as a power of ten and a binary multiplier: `value × 10^exponent × multiplier`.
struct Suffix {
    exponent: i64,
    multiplier: u128,
}

fn parse(input: &str) -> Result<Quantity, Problem> {
    let s = input.trim();
    if s.is_empty() || s != input {
        return Err(Problem::Invalid);
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
        return Err(Problem::Invalid);
    }
    let suffix = parse_suffix(suffix).ok_or(Problem::Invalid)?;
    // The number is `digits × 10^-(fraction length)`; zeros that do not change the value are dropped so that
    // only significant digits count against MAX_DIGITS.
    let frac_part = frac_part.trim_end_matches('0');
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Quantity(0));
    }
    if digits.len() > MAX_DIGITS {
        return Err(Problem::TooManyDigits);
    }
    let mantissa: u128 = digits.parse().map_err(|_| Problem::Invalid)?;
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| Problem::TooManyDigits)?;
    let scaled = mantissa
        .checked_mul(suffix.multiplier)
        .ok_or(Problem::TooManyDigits)?;
    // nanos = scaled × 10^(9 - frac_len + exponent), rounded up (away from zero) to a whole nano-unit as the
    // API server does for precision it cannot keep.
    let power = 9_i64
        .saturating_sub(frac_len)
        .saturating_add(suffix.exponent);
    let magnitude = if power >= 0 {
        u32::try_from(power)
            .ok()
            .and_then(|p| 10_u128.checked_pow(p))
            .and_then(|factor| scaled.checked_mul(factor))
            .ok_or(Problem::TooLarge)?
    } else {
        match u32::try_from(power.unsigned_abs())
            .ok()
            .and_then(|p| 10_u128.checked_pow(p))
        {
            Some(divisor) => scaled.div_ceil(divisor),
            // 10^|power| exceeds u128, so it exceeds `scaled`: a positive value below one nano-unit.
            None => 1,
        }
    };
    let magnitude = i128::try_from(magnitude)
        .ok()
        .filter(|m| *m < LIMIT)
        .ok_or(Problem::TooLarge)?;
    Ok(Quantity(if negative { -magnitude } else { magnitude }))
}

fn parse_suffix(suffix: &str) -> Option<Suffix> {
    let binary = |power: u32| Suffix {
        exponent: 0,
        multiplier: 1 << (10 * power),
    };
    let decimal = |exponent: i64| Suffix {
        exponent,
        multiplier: 1,
    };
    Some(match suffix {
        "" => decimal(0),
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
            let (negative, digits) = match exponent.as_bytes().first()? {
                b'-' => (true, &exponent[1..]),
                b'+' => (false, &exponent[1..]),
                _ => (false, exponent),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // An exponent beyond i64 is as good as infinite either way: saturate instead of failing.
            let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX);
            decimal(if negative { -magnitude } else { magnitude })
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        assert_eq!(q("1e+3"), q("1k"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("5."), q("5"));
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
            "", "lots", "1GB", "1 Gi", "Gi", ".", "1e", "--1", "1.2.3", " 1", "1e+", "1e1.5",
            "1Ki2",
        ] {
            assert!(
                matches!(bad.parse::<Quantity>(), Err(QuantityError::Invalid(_))),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn excess_precision_rounds_up() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1.5n").nanos(), 2);
        assert_eq!(q("-1.5n").nanos(), -2);
        // Rounding happens once, after the suffix: 0.0000000001k is exactly 100n, not rounded away.
        assert_eq!(q("0.0000000001k").nanos(), 100);
        assert_eq!(q("1e-40").nanos(), 1);
        assert_eq!(q("1e-99999999999999999999").nanos(), 1);
        assert_eq!(q("0e99999").nanos(), 0);
        assert_eq!(
            q("1.000000000000000000000000000000000000000000000").nanos(),
            NANO
        );
    }

    #[test]
    fn values_the_api_server_caps_are_too_large_not_wrapped() {
        for big in [
            "8Ei",
            "9223372036854775807",
            "9223372036854775808",
            "-8Ei",
            "1e19",
            "1e40",
            "1e99999999999999999999",
            "16384Pi",
            "99999999999999999999999999999999999999",
        ] {
            assert!(
                matches!(big.parse::<Quantity>(), Err(QuantityError::TooLarge(_))),
                "{big:?} must be too large, got {:?}",
                big.parse::<Quantity>()
            );
        }
        assert_eq!(
            "8Ei".parse::<Quantity>().unwrap_err().to_string(),
            "\"8Ei\" is too large: a Kubernetes quantity must be below 2^63-1 (just under 8Ei)"
        );
        // The largest value below the cap still parses, and so does the same value as a fraction of Ei.
        assert_eq!(
            q("9223372036854775806").nanos(),
            (i64::MAX as i128 - 1) * NANO
        );
        assert!(q("7.99Ei") < q("9223372036854775806"));
    }

    #[test]
    fn too_many_digits_is_its_own_error() {
        let long = format!("1.{}1", "0".repeat(40));
        assert!(matches!(
            long.parse::<Quantity>(),
            Err(QuantityError::TooManyDigits(_))
        ));
    }

    #[test]
    fn canonical_rounds_up_to_milli_like_the_api_server() {
        assert_eq!(q("0.0001").canonical(), q("1m"));
        assert_eq!(q("1n").canonical(), q("1m"));
        assert_eq!(q("1001u").canonical(), q("2m"));
        assert_eq!(q("-0.0001").canonical(), q("-1m"));
        assert_eq!(q("1.5").canonical(), q("1500m"));
        assert_eq!(q("0").canonical(), q("0"));
        assert_eq!(q("1Gi").canonical(), q("1Gi"));
    }

    proptest! {
        /// Parsing never panics, whatever the input.
        #[test]
        fn parsing_never_panics(s in "[-+]?[0-9.]{0,45}([eE][-+]?[0-9]{0,25}|[numkMGTPE]|[KMGTPE]i)?") {
            let _ = s.parse::<Quantity>();
        }

        /// The canonical form is idempotent, never smaller in magnitude, less than a milli away, and whole milli.
        #[test]
        fn canonical_agrees_with_round_up_to_milli(nanos in -(LIMIT - 1)..LIMIT) {
            let value = Quantity(nanos);
            let canonical = value.canonical();
            prop_assert_eq!(canonical.canonical(), canonical);
            prop_assert_eq!(canonical.nanos() % MILLI_IN_NANOS, 0);
            prop_assert!(canonical.nanos().abs() >= nanos.abs());
            prop_assert!((canonical.nanos() - nanos).abs() < MILLI_IN_NANOS);
            prop_assert_eq!(value == canonical, nanos % MILLI_IN_NANOS == 0);
        }

        /// A value written as whole milli-units parses back to itself, and comparing canonical forms is
        /// reflexive across spellings (`1500m`, `1.5`).
        #[test]
        fn milli_spellings_compare_equal(millis in 0_i64..i64::MAX / 1000) {
            let a = q(&format!("{millis}m"));
            let b = q(&format!("{}.{:03}", millis / 1000, millis % 1000));
            prop_assert_eq!(a.canonical(), b.canonical());
            prop_assert_eq!(a, a.canonical());
        }
    }
}
