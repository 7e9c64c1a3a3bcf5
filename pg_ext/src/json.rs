//! JSON crossing between PostgreSQL's jsonb and Rust, for the entry points that read JSON
//! arguments (submit specs, close_many batches): as text, so nothing is rounded on the way.

use pgrx::pg_sys::{self, Datum};

/// A jsonb Datum's text (jsonb_out).
pub fn jsonb_text(datum: Datum) -> String {
    // SAFETY: a jsonb Datum, detoasted before its container is read.
    unsafe {
        let jb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
        let text = pg_sys::JsonbToCString(
            std::ptr::null_mut(),
            &mut (*jb).root,
            pgrx::varlena::varsize(jb.cast()) as i32,
        );
        let s = std::ffi::CStr::from_ptr(text)
            .to_string_lossy()
            .into_owned();
        pg_sys::pfree(text.cast());
        s
    }
}

/// JSON text (a part of a jsonb's own text) as a jsonb Datum (jsonb_in), palloc'd in the
/// current memory context.
pub fn text_to_jsonb(text: &str) -> Datum {
    // JSON text has no raw NUL (a NUL in a string is the escape \u0000).
    let text = std::ffi::CString::new(text).expect("JSON text contains no NUL");
    // SAFETY: jsonb_in parses a valid C string.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(Datum::from(text.as_ptr()))])
    }
    .expect("jsonb_in returns a value")
}

/// The integer a JSON number's text denotes exactly — also when written as 1.0 or 1e2, as
/// PostgreSQL's numeric reads them — or None: a fraction (however small: `1e-400`), beyond i64,
/// or not a number. Read from the text because a float cannot tell 50000.0000000000000001 from
/// 50000 (serde_json keeps the text: feature arbitrary_precision).
pub fn exact_integer(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..]
                .trim_start_matches('+')
                .parse::<i64>()
                .ok()?,
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^shift, with the digits' trailing zeros moved into the shift.
    let all = format!("{whole}{fraction}");
    let significant = all.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    let trailing_zeros = all.len() - all.trim_end_matches('0').len();
    let shift = exponent
        .checked_sub(i64::try_from(fraction.len()).ok()?)?
        .checked_add(i64::try_from(trailing_zeros).ok()?)?;
    if shift < 0 || significant.len() as i64 + shift > 19 {
        return None; // a fraction, or more digits than any i64 has
    }
    let magnitude = significant
        .parse::<i128>()
        .ok()?
        .checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

#[cfg(test)]
mod tests {
    use super::exact_integer;

    #[test]
    fn exact_integers_only() {
        for (text, expected) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("42", Some(42)),
            ("-7", Some(-7)),
            ("1.0", Some(1)),
            ("1.000", Some(1)),
            ("1e2", Some(100)),
            ("1E+2", Some(100)),
            ("150e-1", Some(15)),
            ("0.0", Some(0)),
            ("0e999999", Some(0)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("1e19", None),
            ("1e-400", None),
            ("0.5", None),
            ("50000.0000000000000001", None),
            ("1.5e1", Some(15)),
            ("1.55e1", None),
            ("12e99999999999999999999", None),
            ("", None),
            ("-", None),
            (".5", None),
            ("abc", None),
            ("1e", None),
        ] {
            assert_eq!(exact_integer(text), expected, "{text:?}");
        }
    }
}
