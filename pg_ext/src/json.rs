//! JSON values crossing between PostgreSQL's jsonb and serde_json, for the entry points that
//! read JSON arguments (submit specs, close_many batches).

use pgrx::pg_sys::{self, Datum};
use serde_json::Value;

/// A jsonb Datum as a serde value (through its text form: PostgreSQL already parsed and
/// checked it, so only serde's own limits can fail, see `spec.rs`).
pub fn from_jsonb(datum: Datum) -> Result<Value, serde_json::Error> {
    serde_json::from_str(&jsonb_text(datum))
}

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

/// A serde value as a jsonb Datum (jsonb_in), palloc'd in the current memory context.
pub fn to_jsonb(value: &Value) -> Datum {
    let text = std::ffi::CString::new(value.to_string()).expect("serialized JSON contains no NUL");
    // SAFETY: jsonb_in parses a valid C string.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(Datum::from(text.as_ptr()))])
    }
    .expect("jsonb_in returns a value")
}

/// An integer, also when written as 1.0 or 1e2 (as PostgreSQL's numeric accepts it).
pub fn integer(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64)
            .map(|f| f as i64)
    })
}
