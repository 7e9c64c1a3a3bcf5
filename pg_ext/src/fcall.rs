//! Plumbing for the hot-path entry points, which are plain C-language functions declared in
//! `sql/*.sql` (so the SQL files stay the readable source of every signature, grant and
//! comment): the function-info record PostgreSQL looks up, argument access, and
//! materialized set results.

use crate::error::ExtError;
use pgrx::pg_sys::{self, Datum};

/// Declares `$symbol` as a version-1 C function PostgreSQL can call (`AS 'MODULE_PATHNAME',
/// '$symbol'` in SQL) that runs `$body(Args) -> Datum`, with PostgreSQL errors and Rust panics
/// handled at the boundary. `$finfo` must be `pg_finfo_$symbol`.
macro_rules! sql_function {
    ($symbol:ident, $finfo:ident, $body:path) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[::pgrx::pg_guard]
        #[unsafe(no_mangle)]
        pub extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            $body($crate::fcall::Args(fcinfo))
        }
    };
}
pub(crate) use sql_function;

/// One call's arguments.
#[derive(Clone, Copy)]
pub struct Args(pub pg_sys::FunctionCallInfo);

impl Args {
    fn nullable(&self, n: usize) -> Option<Datum> {
        // SAFETY: PostgreSQL passes nargs arguments; callers ask only for declared ones.
        unsafe {
            let fcinfo = self.0;
            assert!(n < (*fcinfo).nargs as usize, "argument {n} was not passed");
            let arg = *(*fcinfo)
                .args
                .as_slice((*fcinfo).nargs as usize)
                .get_unchecked(n);
            (!arg.isnull).then_some(arg.value)
        }
    }

    pub fn datum(&self, n: usize) -> Option<Datum> {
        self.nullable(n)
    }

    /// A text argument as &str (detoasted in the call's memory context).
    pub fn text(&self, n: usize) -> Option<&str> {
        // SAFETY: the SQL declaration makes argument n text.
        self.nullable(n)
            .map(|d| unsafe { crate::table::text_str(d) })
    }

    pub fn i32(&self, n: usize) -> Option<i32> {
        self.nullable(n).map(|d| d.value() as i32)
    }

    pub fn i64(&self, n: usize) -> Option<i64> {
        self.nullable(n).map(|d| d.value() as i64)
    }

    pub fn bool(&self, n: usize) -> Option<bool> {
        self.nullable(n).map(|d| d.value() != 0)
    }

    /// The function's result is NULL.
    pub fn return_null(&self) -> Datum {
        // SAFETY: setting the result-is-null flag of this call.
        unsafe { (*self.0).isnull = true };
        Datum::from(0)
    }
}

/// A set-returning call in materialize mode: rows go into a tuplestore PostgreSQL reads after
/// the call, with the column layout the SQL declaration gives.
pub struct Materialized {
    store: *mut pg_sys::Tuplestorestate,
    pub desc: pg_sys::TupleDesc,
}

impl Materialized {
    pub fn new(args: Args) -> Materialized {
        // SAFETY: InitMaterializedSRF checks the call context and raises an ERROR when a set
        // cannot be returned here.
        unsafe {
            pg_sys::InitMaterializedSRF(args.0, pg_sys::MAT_SRF_USE_EXPECTED_DESC);
            let rsinfo = (*args.0).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            Materialized {
                store: (*rsinfo).setResult,
                desc: (*rsinfo).setDesc,
            }
        }
    }

    pub fn natts(&self) -> usize {
        // SAFETY: a valid descriptor.
        unsafe { (*self.desc).natts as usize }
    }

    /// Appends a row (copied into the tuplestore).
    pub fn push(&mut self, values: &mut [Datum], nulls: &mut [bool]) {
        if values.len() != self.natts() {
            ExtError::Internal("result row does not match the declared result type".into()).raise();
        }
        // SAFETY: values and nulls match the descriptor.
        unsafe {
            pg_sys::tuplestore_putvalues(
                self.store,
                self.desc,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        };
    }

    /// What a materialized set-returning call returns itself.
    pub fn finish(self) -> Datum {
        Datum::from(0)
    }
}

/// A one-dimensional text[] argument (NULL elements kept as None); 22004 when the array is NULL.
pub fn text_array(datum: Option<Datum>, what: &'static str) -> Vec<Option<String>> {
    let Some(datum) = datum else {
        ExtError::NullArgument(what).raise()
    };
    // SAFETY: a text[] Datum; elements are text.
    unsafe {
        deconstruct(
            datum,
            pg_sys::TEXTOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as i8,
        )
        .into_iter()
        .map(|d| d.map(|d| crate::table::text_str(d).to_owned()))
        .collect()
    }
}

/// A one-dimensional integer[] argument; 22004 when the array is NULL.
pub fn int4_array(datum: Option<Datum>, what: &'static str) -> Vec<Option<i32>> {
    let Some(datum) = datum else {
        ExtError::NullArgument(what).raise()
    };
    // SAFETY: an integer[] Datum.
    unsafe { deconstruct(datum, pg_sys::INT4OID, 4, true, pg_sys::TYPALIGN_INT as i8) }
        .into_iter()
        .map(|d| d.map(|d| d.value() as i32))
        .collect()
}

/// A one-dimensional bigint[] argument; 22004 when the array is NULL.
pub fn int8_array(datum: Option<Datum>, what: &'static str) -> Vec<Option<i64>> {
    let Some(datum) = datum else {
        ExtError::NullArgument(what).raise()
    };
    // SAFETY: a bigint[] Datum.
    unsafe {
        deconstruct(
            datum,
            pg_sys::INT8OID,
            8,
            true,
            pg_sys::TYPALIGN_DOUBLE as i8,
        )
    }
    .into_iter()
    .map(|d| d.map(|d| d.value() as i64))
    .collect()
}

/// A jsonb[] argument's elements (jsonb Datums); 22004 when the array is NULL.
pub fn jsonb_array(datum: Option<Datum>, what: &'static str) -> Vec<Option<Datum>> {
    let Some(datum) = datum else {
        ExtError::NullArgument(what).raise()
    };
    // SAFETY: a jsonb[] Datum.
    unsafe {
        deconstruct(
            datum,
            pg_sys::JSONBOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as i8,
        )
    }
}

/// # Safety
/// `datum` must be an array of `element` with the given storage properties.
unsafe fn deconstruct(
    datum: Datum,
    element: pg_sys::Oid,
    len: i16,
    byval: bool,
    align: i8,
) -> Vec<Option<Datum>> {
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        if (*array).ndim > 1 {
            ExtError::InvalidValue("arrays must be one-dimensional".into()).raise();
        }
        let mut elems: *mut Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut n = 0;
        pg_sys::deconstruct_array(
            array,
            element,
            len.into(),
            byval,
            align,
            &mut elems,
            &mut nulls,
            &mut n,
        );
        (0..n as usize)
            .map(|i| (!*nulls.add(i)).then(|| *elems.add(i)))
            .collect()
    }
}

/// A composite result of the function's declared result type (OUT parameters) from text
/// values; None is NULL.
pub fn record(args: Args, values: &[Option<&str>]) -> Datum {
    // SAFETY: the declared result type is a composite of text columns matching `values`.
    unsafe {
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(args.0, std::ptr::null_mut(), &mut desc)
            != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
            || (*desc).natts as usize != values.len()
        {
            ExtError::Internal("the function's declared result is not the expected record".into())
                .raise();
        }
        let desc = pg_sys::BlessTupleDesc(desc);
        let mut datums: Vec<Datum> = values
            .iter()
            .map(|v| v.map_or(Datum::from(0), crate::table::text_datum))
            .collect();
        let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
        let tuple = pg_sys::heap_form_tuple(desc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::heap_copy_tuple_as_datum(tuple, desc)
    }
}
