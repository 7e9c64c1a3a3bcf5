//! SQL run from the extension's Rust code (the rare paths: targeted claims, workflow releases,
//! error explanations). Always under a pinned search path: the entry points carry no SET
//! clause (a GUC save/restore per call), so the caller's search_path would otherwise be in
//! force and could resolve an operator or function to an object the caller planted.

use pgrx::pg_sys;

/// Runs `f` with the search path pinned to pg_catalog alone (no temp schema). Every name the
/// extension's SQL uses is schema-qualified; this pins what is not (operators, casts, the
/// functions PostgreSQL itself calls).
pub fn pinned<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: PushOverrideSearchPath copies the path; the matching pop follows. On an ERROR,
    // PostgreSQL pops override paths itself when the (sub)transaction aborts.
    unsafe {
        let path = pg_sys::palloc0(size_of::<pg_sys::OverrideSearchPath>())
            .cast::<pg_sys::OverrideSearchPath>();
        (*path).schemas = std::ptr::null_mut();
        (*path).addCatalog = true;
        (*path).addTemp = false;
        pg_sys::PushOverrideSearchPath(path);
        let result = f();
        pg_sys::PopOverrideSearchPath();
        result
    }
}
