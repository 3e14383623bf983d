//! Just enough of Kubernetes resource quantities to compare storage sizes (`1Gi` < `1500M`).

/// Parses a quantity into whole base units (bytes for storage), rounding fractions up; `None` when malformed.
pub fn parse_quantity(text: &str) -> Option<u128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (numerator, denominator) = parse_decimal(number)?;
    let (multiplier, divisor): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1000u128.pow(2), 1),
        "G" => (1000u128.pow(3), 1),
        "T" => (1000u128.pow(4), 1),
        "P" => (1000u128.pow(5), 1),
        "E" => (1000u128.pow(6), 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: u32 = exponent[1..].parse().ok()?;
            (10u128.checked_pow(power)?, 1)
        }
        _ => return None,
    };
    let scaled = numerator.checked_mul(multiplier)?;
    let divisor = denominator.checked_mul(divisor)?;
    Some(scaled.div_ceil(divisor))
}

/// `"1.25"` → `(125, 100)`; negative numbers are not sizes.
fn parse_decimal(number: &str) -> Option<(u128, u128)> {
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number.starts_with('-') {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    Some((digits.parse().ok()?, denominator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("512Mi"), Some(512 << 20));
        assert_eq!(parse_quantity("2G"), Some(2_000_000_000));
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("1e3"), Some(1000));
    }

    #[test]
    fn fractions_round_up() {
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("1500m"), Some(2));
        assert_eq!(parse_quantity("0.1"), Some(1));
    }

    #[test]
    fn compares_across_units() {
        assert!(parse_quantity("1Gi") < parse_quantity("1100M"));
        assert!(parse_quantity("2Gi") > parse_quantity("2G"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "1Gb", "-1Gi", "1..2", "abc", "."] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }
}
