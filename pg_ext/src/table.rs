//! Direct access to the extension's tables for the hot path (assign, close, fail, submit):
//! index scans, row locks, updates and inserts through the heap and index access methods,
//! without building an executor plan on every call.
//!
//! Why: `bash scripts/profile` showed about two thirds of an assign+close cycle in PL/pgSQL and
//! executor start-up (plan nodes, InitPlans, opening every index and compiling its predicate),
//! and only a small share in the reads and writes themselves. Everything that start-up rebuilt
//! per statement is built here once per session and kept until the catalog says otherwise.
//!
//! What keeps this honest: the SQL files stay the one source of the schema. Columns are found by
//! name; every index of a table is maintained by the rules the executor applies (partial-index
//! predicates and expression columns evaluated from the catalog, uniqueness checked by the index
//! AM), and NOT NULL and CHECK constraints are checked on every write. Adding an index or a
//! constraint in `sql/` needs no change here. The scan indexes' shapes are checked when the
//! cache is built, so a changed index definition fails loudly instead of scanning wrongly.
//!
//! The cache lives in a memory context under TopMemoryContext and is dropped by a relcache
//! invalidation callback whenever PostgreSQL invalidates one of our relations (DDL, VACUUM's
//! statistics updates, DROP/CREATE EXTENSION), and rebuilt on next use.

use crate::error::ExtError;
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

/// Declares a table's columns once: the struct holds each column's 0-based position, found by
/// name in the relation's descriptor when the cache is built.
macro_rules! columns {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        // Every column is listed, also those the Rust code only ever leaves NULL.
        #[allow(dead_code)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name { $(pub $field: usize,)* }
        #[allow(dead_code)]
        impl $name {
            const NAMES: &[&str] = &[$(stringify!($field)),*];
            fn resolve(desc: pg_sys::TupleDesc, table: &str) -> $name {
                $name { $($field: column_position(desc, stringify!($field), table),)* }
            }
        }
    };
}

columns!(
    /// colony_assign.processes: every column, because inserts write whole rows (a column added
    /// in SQL but not here makes the cache refuse to build, instead of writing NULLs).
    ProcessColumns {
        id, colony, state, executor_type, location, executor_names, preferred_location,
        locality_wait, locality_until, assigned_executor, priority, funcname, label, nodename, max_wait_time,
        max_exec_time, max_retries, spec, input, output, errors, retries, submitted_at,
        started_at, ended_at, wait_deadline, exec_deadline, workflow_id, pending_parents,
        parents, children, lease_until,
    }
);

columns!(
    /// colony_assign.executors
    ExecutorColumns { colony, name, executor_type, location, token_hash, last_seen, stale_since }
);

columns!(
    /// colony_assign.colonies
    ColonyColumns { name, paused, strict, claim_lease }
);

/// Process states (DESIGN.md).
pub const WAITING: i32 = 0;
pub const RUNNING: i32 = 1;

fn column_position(desc: pg_sys::TupleDesc, name: &str, table: &str) -> usize {
    // SAFETY: desc is a valid descriptor; attrs has natts entries.
    let attrs = unsafe { (*desc).attrs.as_slice((*desc).natts as usize) };
    attrs
        .iter()
        .position(|a| {
            // SAFETY: attname is a NUL-terminated NameData.
            !a.attisdropped
                && unsafe { CStr::from_ptr(a.attname.data.as_ptr()) }.to_bytes() == name.as_bytes()
        })
        .unwrap_or_else(|| {
            ExtError::Internal(format!("colony_assign.{table} has no column {name}")).raise()
        })
}

/// One index of a table and what maintaining it needs.
struct IndexMeta {
    oid: Oid,
    /// Built once per cache (with predicate and expression states prepared in the cache's
    /// EState), as ExecOpenIndices would per statement.
    info: *mut pg_sys::IndexInfo,
    unique: bool,
    /// Heap attribute numbers of its key columns (0 = an expression), for the
    /// "index unchanged by this update" hint the B-tree uses for bottom-up deletion.
    key_attnums: Vec<i16>,
}

/// A table of ours, ready for direct writes.
pub struct TableInfo {
    pub oid: Oid,
    /// A copy of the relation's descriptor that lives as long as the cache.
    pub desc: pg_sys::TupleDesc,
    pub natts: usize,
    /// Scratch slot for predicate and constraint evaluation of a new row version.
    slot: *mut pg_sys::TupleTableSlot,
    /// For ExecConstraints (its CHECK expressions are compiled into the cache's EState once).
    result_rel: *mut pg_sys::ResultRelInfo,
    indexes: Vec<IndexMeta>,
}

/// Everything the hot path built for this session, valid until an invalidation.
pub struct Schema {
    context: pg_sys::MemoryContext,
    estate: *mut pg_sys::EState,
    pub processes: TableInfo,
    pub executors: TableInfo,
    pub colonies: TableInfo,
    pub p: ProcessColumns,
    pub e: ExecutorColumns,
    pub c: ColonyColumns,
    /// processes_pkey, processes_assign_located_idx, processes_assign_anywhere_idx,
    /// processes_targeted_idx, executors_pkey, colonies_pkey.
    pub processes_pkey: Oid,
    pub located_idx: Oid,
    pub anywhere_idx: Oid,
    /// processes_assign_preferred_idx: waiting for a preferred location.
    pub preferred_idx: Oid,
    pub targeted_idx: Oid,
    pub executors_pkey: Oid,
    pub colonies_pkey: Oid,
    /// The identity sequence of processes.id.
    pub id_sequence: Oid,
    /// colony_assign.process (what assign() returns) and, per attribute, the processes column.
    process_desc: pg_sys::TupleDesc,
    pub process_type_map: Vec<usize>,
}

impl Schema {
    /// A processes row as a `colony_assign.process` composite Datum.
    pub fn process_datum(&self, row: &Row) -> Datum {
        let mut values: Vec<Datum> = self
            .process_type_map
            .iter()
            .map(|&c| row.values[c])
            .collect();
        let mut nulls: Vec<bool> = self
            .process_type_map
            .iter()
            .map(|&c| row.nulls[c])
            .collect();
        // SAFETY: values match the type's descriptor; heap_copy_tuple_as_datum inlines any
        // TOAST pointer, as a composite Datum must not hold one.
        unsafe {
            let tuple =
                pg_sys::heap_form_tuple(self.process_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::heap_copy_tuple_as_datum(tuple, self.process_desc)
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // SAFETY: the context holds the EState and everything compiled into it; nothing else
        // points into it once the last handle to this Schema is gone.
        unsafe { pg_sys::MemoryContextDelete(self.context) };
    }
}

thread_local! {
    static SCHEMA: RefCell<Option<Rc<Schema>>> = const { RefCell::new(None) };
    /// Set by the relcache callback; the cache is rebuilt on next use (never while in use).
    static STALE: Cell<bool> = const { Cell::new(false) };
    static OUR_RELATIONS: RefCell<Vec<Oid>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: Datum, relid: Oid) {
    // Only flags: an invalidation can arrive in the middle of an operation that uses the cache.
    if relid == pg_sys::InvalidOid || OUR_RELATIONS.with_borrow(|ours| ours.contains(&relid)) {
        STALE.set(true);
    }
}

/// The session's schema cache, built (or rebuilt after an invalidation) on demand. Callers
/// must have locked `colony_assign.processes` first (see [`Session::open`]): taking that lock
/// processes pending invalidations, so a cache returned here reflects the current catalog.
/// A call keeps its own handle, so a rebuild during a nested call never frees what an outer
/// call still uses.
fn schema() -> Rc<Schema> {
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registering a static callback; PostgreSQL keeps at most a few per backend
        // and we register once.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), Datum::from(0))
        };
        CALLBACK_REGISTERED.set(true);
    }
    if STALE.replace(false) {
        SCHEMA.with_borrow_mut(Option::take);
    }
    if let Some(s) = SCHEMA.with_borrow(Clone::clone) {
        return s;
    }
    // SAFETY: catalog lookups and allocations in a context we own.
    let built = Rc::new(unsafe { build_schema() });
    SCHEMA.with_borrow_mut(|s| *s = Some(built.clone()));
    built
}

fn relation_oid(namespace: Oid, name: &CStr) -> Oid {
    // SAFETY: a syscache lookup by name.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    if oid == pg_sys::InvalidOid {
        ExtError::Internal(format!(
            "colony_assign.{} is missing",
            name.to_string_lossy()
        ))
        .raise();
    }
    oid
}

/// Runs `f` with `context` as the current memory context.
pub fn in_context<T>(context: pg_sys::MemoryContext, f: impl FnOnce() -> T) -> T {
    // SAFETY: switching and restoring the current memory context. On an ERROR, PostgreSQL
    // resets CurrentMemoryContext itself when it aborts the transaction.
    unsafe {
        let previous = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = context;
        let result = f();
        pg_sys::CurrentMemoryContext = previous;
        result
    }
}

unsafe fn build_schema() -> Schema {
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"colony_assign".as_ptr(), false);
        let context = pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"colony_assign hot path".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        in_context(context, || {
            let estate = pg_sys::CreateExecutorState();
            // CreateExecutorState made its own context as a child of ours; everything it
            // compiles (predicates, expressions, constraints) lives there.
            let processes = table_info(estate, relation_oid(namespace, c"processes"), "processes");
            let executors = table_info(estate, relation_oid(namespace, c"executors"), "executors");
            let colonies = table_info(estate, relation_oid(namespace, c"colonies"), "colonies");
            let p = ProcessColumns::resolve(processes.desc, "processes");
            let live = (*processes.desc)
                .attrs
                .as_slice(processes.natts)
                .iter()
                .filter(|a| !a.attisdropped)
                .count();
            if live != ProcessColumns::NAMES.len() {
                ExtError::Internal(format!(
                    "colony_assign.processes has {live} columns, the hot path knows {}: {:?}",
                    ProcessColumns::NAMES.len(),
                    ProcessColumns::NAMES
                ))
                .raise();
            }
            let e = ExecutorColumns::resolve(executors.desc, "executors");
            let c = ColonyColumns::resolve(colonies.desc, "colonies");

            let processes_pkey = relation_oid(namespace, c"processes_pkey");
            let located_idx = relation_oid(namespace, c"processes_assign_located_idx");
            let anywhere_idx = relation_oid(namespace, c"processes_assign_anywhere_idx");
            let preferred_idx = relation_oid(namespace, c"processes_assign_preferred_idx");
            let targeted_idx = relation_oid(namespace, c"processes_targeted_idx");
            let executors_pkey = relation_oid(namespace, c"executors_pkey");
            let colonies_pkey = relation_oid(namespace, c"colonies_pkey");
            // The scans build their keys by column position: check the shapes they assume.
            let attnum = |i: usize| (i + 1) as i16;
            expect_keys(
                &processes,
                processes_pkey,
                &[attnum(p.id)],
                "processes_pkey",
            );
            expect_keys(
                &processes,
                located_idx,
                &[
                    attnum(p.colony),
                    attnum(p.executor_type),
                    attnum(p.location),
                    0,
                    attnum(p.id),
                ],
                "processes_assign_located_idx",
            );
            expect_keys(
                &processes,
                preferred_idx,
                &[
                    attnum(p.colony),
                    attnum(p.executor_type),
                    attnum(p.preferred_location),
                    0,
                    attnum(p.id),
                ],
                "processes_assign_preferred_idx",
            );
            expect_keys(
                &processes,
                anywhere_idx,
                &[attnum(p.colony), attnum(p.executor_type), 0, attnum(p.id)],
                "processes_assign_anywhere_idx",
            );
            expect_keys(
                &executors,
                executors_pkey,
                &[attnum(e.colony), attnum(e.name)],
                "executors_pkey",
            );
            expect_keys(&colonies, colonies_pkey, &[attnum(c.name)], "colonies_pkey");

            let sequences = pg_sys::getOwnedSequences(processes.oid);
            if sequences.is_null() || (*sequences).length != 1 {
                ExtError::Internal("colony_assign.processes.id has no identity sequence".into())
                    .raise();
            }
            let id_sequence = (*(*sequences).elements).oid_value;

            // By namespace, never through the caller's search_path.
            let type_oid = pg_sys::GetSysCacheOid(
                pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
                pg_sys::Anum_pg_type_oid as i16,
                Datum::from(c"process".as_ptr()),
                Datum::from(namespace),
                Datum::from(0),
                Datum::from(0),
            );
            if type_oid == pg_sys::InvalidOid {
                ExtError::Internal("type colony_assign.process is missing".into()).raise();
            }
            let process_type = pg_sys::lookup_rowtype_tupdesc_copy(type_oid, -1);
            let natts = (*process_type).natts as usize;
            let process_type_map = (0..natts)
                .map(|i| {
                    let a = &(*process_type).attrs.as_slice(natts)[i];
                    let name = CStr::from_ptr(a.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned();
                    column_position(processes.desc, &name, "processes")
                })
                .collect();

            OUR_RELATIONS.with_borrow_mut(|ours| {
                ours.clear();
                for t in [&processes, &executors, &colonies] {
                    ours.push(t.oid);
                    ours.extend(t.indexes.iter().map(|i| i.oid));
                }
            });

            Schema {
                context,
                estate,
                processes,
                executors,
                colonies,
                p,
                e,
                c,
                processes_pkey,
                located_idx,
                anywhere_idx,
                preferred_idx,
                targeted_idx,
                executors_pkey,
                colonies_pkey,
                id_sequence,
                process_desc: process_type,
                process_type_map,
            }
        })
    }
}

fn expect_keys(table: &TableInfo, index: Oid, keys: &[i16], name: &str) {
    let meta = table
        .indexes
        .iter()
        .find(|i| i.oid == index)
        .unwrap_or_else(|| {
            ExtError::Internal(format!("{name} is not an index of its table")).raise()
        });
    if meta.key_attnums != keys {
        ExtError::Internal(format!(
            "{name} does not have the key columns the hot path expects ({:?}, expected {keys:?})",
            meta.key_attnums
        ))
        .raise();
    }
}

/// Opens a table once (for its descriptor and index list) and builds what writes to it need.
unsafe fn table_info(estate: *mut pg_sys::EState, oid: Oid, name: &str) -> TableInfo {
    unsafe {
        let rel = pg_sys::table_open(oid, pg_sys::AccessShareLock as i32);
        let desc = pg_sys::CreateTupleDescCopyConstr((*rel).rd_att);
        let natts = (*desc).natts as usize;
        let slot = pg_sys::ExecInitExtraTupleSlot(estate, desc, &raw const pg_sys::TTSOpsHeapTuple);
        let result_rel =
            pg_sys::palloc0(size_of::<pg_sys::ResultRelInfo>()).cast::<pg_sys::ResultRelInfo>();
        pg_sys::InitResultRelInfo(result_rel, rel, 0, std::ptr::null_mut(), 0);
        let mut indexes = Vec::new();
        let list = pg_sys::RelationGetIndexList(rel);
        if !list.is_null() {
            for i in 0..(*list).length as usize {
                let index_oid = (*(*list).elements.add(i)).oid_value;
                let index = pg_sys::index_open(index_oid, pg_sys::AccessShareLock as i32);
                let info = pg_sys::BuildIndexInfo(index);
                if !(*info).ii_ExclusionOps.is_null() {
                    ExtError::Internal(format!(
                        "an exclusion constraint on colony_assign.{name} is not supported"
                    ))
                    .raise();
                }
                // Compile the predicate and expressions now, into the long-lived EState, the
                // way ExecInsertIndexTuples would on first use in a statement.
                if !(*info).ii_Predicate.is_null() {
                    (*info).ii_PredicateState =
                        pg_sys::ExecPrepareQual((*info).ii_Predicate, estate);
                }
                if !(*info).ii_Expressions.is_null() {
                    (*info).ii_ExpressionsState =
                        pg_sys::ExecPrepareExprList((*info).ii_Expressions, estate);
                }
                let nkeys = (*info).ii_NumIndexKeyAttrs as usize;
                let key_attnums = (&(*info).ii_IndexAttrNumbers)[..nkeys].to_vec();
                let unique = (*(*index).rd_index).indisunique;
                if unique && !(*(*index).rd_index).indimmediate {
                    ExtError::Internal(format!(
                        "a deferrable unique index on colony_assign.{name} is not supported"
                    ))
                    .raise();
                }
                indexes.push(IndexMeta {
                    oid: index_oid,
                    info,
                    unique,
                    key_attnums,
                });
                pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
            }
        }
        // The ResultRelInfo keeps a pointer to the relation; it is re-pointed at the relation
        // opened by each call before use.
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        TableInfo {
            oid,
            desc,
            natts,
            slot,
            result_rel,
            indexes,
        }
    }
}

/// A deformed row: one Datum and null flag per column of its table.
pub struct Row {
    pub values: Vec<Datum>,
    pub nulls: Vec<bool>,
}

impl Row {
    pub fn is_null(&self, col: usize) -> bool {
        self.nulls[col]
    }
    pub fn datum(&self, col: usize) -> Option<Datum> {
        (!self.nulls[col]).then(|| self.values[col])
    }
    pub fn i32(&self, col: usize) -> Option<i32> {
        self.datum(col).map(|d| d.value() as i32)
    }
    pub fn i64(&self, col: usize) -> Option<i64> {
        self.datum(col).map(|d| d.value() as i64)
    }
    pub fn bool(&self, col: usize) -> Option<bool> {
        self.datum(col).map(|d| d.value() != 0)
    }
    /// A text column, detoasted. None for NULL.
    pub fn text(&self, col: usize) -> Option<&str> {
        // SAFETY: the column is text (by schema); the detoasted copy lives in the current
        // memory context, which outlives this call's use of it.
        self.datum(col).map(|d| unsafe { text_str(d) })
    }
    pub fn set(&mut self, col: usize, value: Option<Datum>) {
        self.values[col] = value.unwrap_or(Datum::from(0));
        self.nulls[col] = value.is_none();
    }
}

/// A text Datum as &str (detoasting when needed). Our text is always valid UTF-8: the database
/// encoding is checked by PostgreSQL on input.
///
/// # Safety
/// `d` must be a non-null text Datum.
pub unsafe fn text_str<'a>(d: Datum) -> &'a str {
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        let len = pgrx::varlena::varsize_any_exhdr(v);
        let data = pgrx::varlena::vardata_any(v).cast::<u8>();
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(data, len))
    }
}

/// A bytea Datum's bytes (detoasted when needed).
///
/// # Safety
/// `d` must be a non-null bytea Datum.
pub unsafe fn bytes<'a>(d: Datum) -> &'a [u8] {
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        let len = pgrx::varlena::varsize_any_exhdr(v);
        std::slice::from_raw_parts(pgrx::varlena::vardata_any(v).cast::<u8>(), len)
    }
}

/// A text Datum (palloc'd in the current memory context).
pub fn text_datum(s: &str) -> Datum {
    // SAFETY: copies len bytes into a new varlena.
    Datum::from(unsafe { pg_sys::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as i32) })
}

/// The scan keys of an index scan: equality on leading columns, then optionally a row
/// comparison `(next, next + 1) > (a, b)` (a queue position: the scan starts right after it).
pub struct ScanKeys {
    keys: Vec<pg_sys::ScanKeyData>,
    /// Members of row-comparison keys: a header key points at them, so each pair is boxed (a
    /// Vec that grows moves its elements; a Box keeps their address) for as long as the scan.
    #[allow(clippy::vec_box)]
    rows: Vec<Box<[pg_sys::ScanKeyData; 2]>>,
}

impl ScanKeys {
    pub fn new() -> ScanKeys {
        ScanKeys {
            keys: Vec::with_capacity(4),
            rows: Vec::new(),
        }
    }
    fn push(&mut self, index: pg_sys::Relation, strategy: u32, procedure: u32, argument: Datum) {
        let attno = self.keys.len() as i16 + 1;
        let mut key = pg_sys::ScanKeyData::default();
        // SAFETY: rd_indcollation has one entry per index column; attno is within them.
        unsafe {
            let collation = *(*index).rd_indcollation.add(attno as usize - 1);
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                attno,
                strategy as u16,
                pg_sys::InvalidOid,
                collation,
                pg_sys::regproc::from(procedure),
                argument,
            );
        }
        self.keys.push(key);
    }
    pub fn text_eq(mut self, index: pg_sys::Relation, value: &str) -> ScanKeys {
        self.push(
            index,
            pg_sys::BTEqualStrategyNumber,
            pg_sys::F_TEXTEQ,
            text_datum(value),
        );
        self
    }
    pub fn int8_eq(mut self, index: pg_sys::Relation, value: i64) -> ScanKeys {
        self.push(
            index,
            pg_sys::BTEqualStrategyNumber,
            pg_sys::F_INT8EQ,
            Datum::from(value),
        );
        self
    }
    /// `(int4 column, int8 column) > (a, b)` on the next two index columns, as the executor
    /// builds a row comparison: the B-tree descends straight to the first row after (a, b).
    pub fn after(mut self, a: i32, b: i64) -> ScanKeys {
        let attno = self.keys.len() as i16 + 1;
        let mut members = Box::new([
            pg_sys::ScanKeyData::default(),
            pg_sys::ScanKeyData::default(),
        ]);
        let mut header = pg_sys::ScanKeyData::default();
        // SAFETY: initializing key structs; the header's argument points at the boxed members.
        unsafe {
            pg_sys::ScanKeyEntryInitialize(
                &mut members[0],
                pg_sys::SK_ROW_MEMBER as i32,
                attno,
                pg_sys::BTGreaterStrategyNumber as u16,
                pg_sys::INT4OID,
                pg_sys::InvalidOid,
                pg_sys::regproc::from(pg_sys::F_BTINT4CMP),
                Datum::from(a),
            );
            pg_sys::ScanKeyEntryInitialize(
                &mut members[1],
                (pg_sys::SK_ROW_MEMBER | pg_sys::SK_ROW_END) as i32,
                attno + 1,
                pg_sys::BTGreaterStrategyNumber as u16,
                pg_sys::INT8OID,
                pg_sys::InvalidOid,
                pg_sys::regproc::from(pg_sys::F_BTINT8CMP),
                Datum::from(b),
            );
            pg_sys::ScanKeyEntryInitialize(
                &mut header,
                pg_sys::SK_ROW_HEADER as i32,
                attno,
                pg_sys::BTGreaterStrategyNumber as u16,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::regproc::from(0u32),
                Datum::from(members.as_mut_ptr()),
            );
        }
        self.rows.push(members);
        self.keys.push(header);
        self
    }
}

/// An ordered index scan over one of our tables, yielding visible rows.
pub struct IndexScan {
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// The scan reads its keys at every rescan; they live as long as it.
    _keys: ScanKeys,
}

impl IndexScan {
    /// Next row visible to the scan's snapshot, with its TID; None at the end. The row is a
    /// copy in the current memory context, so it stays valid after the scan moves on.
    pub fn next(&mut self, table: &TableInfo) -> Option<(pg_sys::ItemPointerData, Row)> {
        // SAFETY: scan and slot were set up by Session::scan for this table.
        unsafe {
            if !pg_sys::index_getnext_slot(
                self.scan,
                pg_sys::ScanDirection::ForwardScanDirection,
                self.slot,
            ) {
                return None;
            }
            let tid = (*self.slot).tts_tid;
            let copy = pg_sys::ExecCopySlotHeapTuple(self.slot);
            Some((tid, deform(copy, table)))
        }
    }

    pub fn end(self) {
        // SAFETY: ends the scan and drops the slot made for it.
        unsafe {
            pg_sys::index_endscan(self.scan);
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
        }
    }
}

/// What an update of a row version found.
pub enum Write {
    Done,
    /// Another transaction holds a lock on the row or is changing it (only when not waiting):
    /// what SKIP LOCKED skips.
    Busy,
    /// The version is no longer the row's latest: updated or deleted by a transaction that
    /// committed after the snapshot (or by this one).
    Changed,
}

/// One call's view of the tables: relations opened and locked for this call, the session's
/// schema cache, and the command id its writes use.
pub struct Session {
    pub schema: Rc<Schema>,
    pub processes: pg_sys::Relation,
    executors: Option<pg_sys::Relation>,
    colonies: Option<pg_sys::Relation>,
    /// Index relations opened by this call (closed at the end, locks kept to end of transaction).
    opened: Vec<(Oid, pg_sys::Relation)>,
    cid: pg_sys::CommandId,
}

impl Session {
    /// Locks `colony_assign.processes` for writing and returns the session cache. Refuses in a
    /// read-only transaction or on a standby, as an UPDATE statement would.
    pub fn open(what: &CStr) -> Session {
        // SAFETY: these raise an ERROR when writing is not allowed here; the lookups are
        // syscache reads.
        unsafe {
            pg_sys::PreventCommandIfReadOnly(what.as_ptr());
            pg_sys::PreventCommandIfParallelMode(what.as_ptr());
            pg_sys::PreventCommandDuringRecovery(what.as_ptr());
            // Found by name every call (two syscache probes): after DROP and CREATE EXTENSION
            // the oid changes. Taking the lock processes pending invalidations, so the cache
            // asked for next is current.
            let namespace = pg_sys::get_namespace_oid(c"colony_assign".as_ptr(), false);
            let oid = relation_oid(namespace, c"processes");
            let processes = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as i32);
            let mut schema = schema();
            if schema.processes.oid != oid {
                STALE.set(true);
                schema = self::schema();
            }
            // As a volatile SQL function does per statement: what earlier calls of this same
            // statement wrote becomes visible (`SELECT close(id, ..) FROM assign(..)`), through
            // a copy of the statement's snapshot so the outer query's own view is untouched.
            // Popped by close(); an ERROR's abort pops it otherwise.
            pg_sys::CommandCounterIncrement();
            pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
            Session {
                schema,
                processes,
                executors: None,
                colonies: None,
                opened: Vec::with_capacity(4),
                // Marks the command id as used by a write, as the executor does.
                cid: pg_sys::GetCurrentCommandId(true),
            }
        }
    }

    pub fn executors(&mut self) -> pg_sys::Relation {
        let oid = self.schema.executors.oid;
        // SAFETY: opening our table; RowExclusiveLock because liveness updates may follow.
        *self.executors.get_or_insert_with(|| unsafe {
            pg_sys::table_open(oid, pg_sys::RowExclusiveLock as i32)
        })
    }

    pub fn colonies(&mut self) -> pg_sys::Relation {
        let oid = self.schema.colonies.oid;
        // SAFETY: opening our table for reading.
        *self.colonies.get_or_insert_with(|| unsafe {
            pg_sys::table_open(oid, pg_sys::AccessShareLock as i32)
        })
    }

    /// An index of ours, opened (and locked for writing) once per call.
    pub fn index(&mut self, oid: Oid) -> pg_sys::Relation {
        if let Some((_, rel)) = self.opened.iter().find(|(o, _)| *o == oid) {
            return *rel;
        }
        // SAFETY: opening an index of one of our tables, as the executor does for inserts.
        let rel = unsafe { pg_sys::index_open(oid, pg_sys::RowExclusiveLock as i32) };
        self.opened.push((oid, rel));
        rel
    }

    /// Starts an ordered scan of `index` (of `heap`) with `keys`, under `snapshot`.
    pub fn scan(
        &mut self,
        heap: pg_sys::Relation,
        index: Oid,
        keys: ScanKeys,
        snapshot: pg_sys::Snapshot,
    ) -> IndexScan {
        let index = self.index(index);
        let mut keys = keys;
        // SAFETY: relations are open and locked; the keys move into the scan, which outlives
        // their use.
        unsafe {
            let n = keys.keys.len() as i32;
            let scan = pg_sys::index_beginscan(heap, index, snapshot, n, 0);
            pg_sys::index_rescan(scan, keys.keys.as_mut_ptr(), n, std::ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            IndexScan {
                scan,
                slot,
                _keys: keys,
            }
        }
    }

    /// The first row of `index` matching `keys` that `snapshot` sees.
    pub fn fetch(
        &mut self,
        heap: pg_sys::Relation,
        table: &TableInfo,
        index: Oid,
        keys: ScanKeys,
        snapshot: pg_sys::Snapshot,
    ) -> Option<(pg_sys::ItemPointerData, Row)> {
        let mut scan = self.scan(heap, index, keys, snapshot);
        let row = scan.next(table);
        scan.end();
        row
    }

    /// Writes `row` as the new version of the row whose version `tid` the caller read, if that
    /// is still its latest version: a compare-and-set on the version, which is what an UPDATE
    /// after FOR NO KEY UPDATE amounts to, in one step and one WAL record. With `wait`, waits
    /// for a transaction that holds the row (like an UPDATE); without, returns [`Write::Busy`]
    /// (like SKIP LOCKED). Maintains every index of the table; `changed` lists the columns this
    /// update changes (for the B-tree's bottom-up deletion hint). Afterwards `row` refers to
    /// the new version (a copy in the current memory context).
    pub fn update(
        &mut self,
        heap: pg_sys::Relation,
        table: &TableInfo,
        tid: pg_sys::ItemPointerData,
        row: &mut Row,
        changed: &[usize],
        wait: bool,
    ) -> Write {
        // SAFETY: forming and writing a tuple of the table's own descriptor.
        unsafe {
            let tuple = pg_sys::heap_form_tuple(
                table.desc,
                row.values.as_mut_ptr(),
                row.nulls.as_mut_ptr(),
            );
            (*tuple).t_tableOid = (*heap).rd_id;
            self.check_constraints(heap, table, tuple);
            let mut otid = tid;
            let mut tmfd = pg_sys::TM_FailureData::default();
            let mut lockmode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
            let result = pg_sys::heap_update(
                heap,
                &mut otid,
                tuple,
                self.cid,
                std::ptr::null_mut(),
                wait,
                &mut tmfd,
                &mut lockmode,
            );
            match result {
                pg_sys::TM_Result::TM_Ok => {}
                pg_sys::TM_Result::TM_BeingModified | pg_sys::TM_Result::TM_WouldBlock => {
                    return Write::Busy;
                }
                pg_sys::TM_Result::TM_Updated if uses_transaction_snapshot() => {
                    ExtError::SerializationFailure.raise()
                }
                _ => return Write::Changed,
            }
            if !heap_only(tuple) {
                self.insert_index_entries(heap, table, tuple, Some(changed));
            }
            *row = deform(tuple, table);
            Write::Done
        }
    }

    /// Inserts `row` as a new row of `table`, with its index entries.
    pub fn insert(&mut self, heap: pg_sys::Relation, table: &TableInfo, row: &mut Row) {
        // SAFETY: as in update().
        unsafe {
            let tuple = pg_sys::heap_form_tuple(
                table.desc,
                row.values.as_mut_ptr(),
                row.nulls.as_mut_ptr(),
            );
            (*tuple).t_tableOid = (*heap).rd_id;
            self.check_constraints(heap, table, tuple);
            pg_sys::heap_insert(heap, tuple, self.cid, 0, std::ptr::null_mut());
            self.insert_index_entries(heap, table, tuple, None);
            pg_sys::heap_freetuple(tuple);
        }
    }

    /// NOT NULL and CHECK constraints of the table, as the executor checks them.
    unsafe fn check_constraints(
        &mut self,
        heap: pg_sys::Relation,
        table: &TableInfo,
        tuple: pg_sys::HeapTuple,
    ) {
        unsafe {
            if (*(*heap).rd_att).constr.is_null() {
                return;
            }
            let estate = self.schema.estate;
            pg_sys::ExecStoreHeapTuple(tuple, table.slot, false);
            (*table.result_rel).ri_RelationDesc = heap;
            pg_sys::ExecConstraints(table.result_rel, table.slot, estate);
            pg_sys::ExecClearTuple(table.slot);
            pg_sys::MemoryContextReset((*per_tuple_econtext(estate)).ecxt_per_tuple_memory);
        }
    }

    /// What ExecInsertIndexTuples does, with the IndexInfo (and its compiled predicate and
    /// expressions) kept across calls. `changed`: None for an insert, else the columns an
    /// update changed.
    unsafe fn insert_index_entries(
        &mut self,
        heap: pg_sys::Relation,
        table: &TableInfo,
        tuple: pg_sys::HeapTuple,
        changed: Option<&[usize]>,
    ) {
        unsafe {
            let estate = self.schema.estate;
            let econtext = per_tuple_econtext(estate);
            pg_sys::ExecStoreHeapTuple(tuple, table.slot, false);
            (*table.slot).tts_tid = (*tuple).t_self;
            (*table.slot).tts_tableOid = (*heap).rd_id;
            (*econtext).ecxt_scantuple = table.slot;
            let mut values = [Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
            let mut isnull = [false; pg_sys::INDEX_MAX_KEYS as usize];
            for meta in &table.indexes {
                let info = meta.info;
                if !(*info).ii_ReadyForInserts {
                    continue;
                }
                if !(*info).ii_PredicateState.is_null()
                    && !pg_sys::ExecQual((*info).ii_PredicateState, econtext)
                {
                    continue;
                }
                pg_sys::FormIndexDatum(
                    info,
                    table.slot,
                    estate,
                    values.as_mut_ptr(),
                    isnull.as_mut_ptr(),
                );
                // "Unchanged by this update": no key column (and no expression, which could
                // read any column) is among the changed ones.
                let unchanged = changed.is_some_and(|changed| {
                    meta.key_attnums
                        .iter()
                        .all(|&a| a > 0 && !changed.contains(&(a as usize - 1)))
                });
                let index = self.index(meta.oid);
                let check = if meta.unique {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
                } else {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
                };
                pg_sys::index_insert(
                    index,
                    values.as_mut_ptr(),
                    isnull.as_mut_ptr(),
                    &mut (*table.slot).tts_tid,
                    heap,
                    check,
                    unchanged,
                    info,
                );
            }
            pg_sys::ExecClearTuple(table.slot);
            pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
        }
    }

    /// Closes the relations (their locks stay until the end of the transaction).
    pub fn close(self) {
        // SAFETY: closing what this call opened.
        unsafe {
            for (_, rel) in self.opened {
                pg_sys::index_close(rel, pg_sys::NoLock as i32);
            }
            if let Some(rel) = self.executors {
                pg_sys::table_close(rel, pg_sys::NoLock as i32);
            }
            if let Some(rel) = self.colonies {
                pg_sys::table_close(rel, pg_sys::NoLock as i32);
            }
            pg_sys::table_close(self.processes, pg_sys::NoLock as i32);
            pg_sys::PopActiveSnapshot();
        }
    }
}

/// Deforms a tuple of `table` (values of by-reference columns point into it).
fn deform(tuple: pg_sys::HeapTuple, table: &TableInfo) -> Row {
    let mut values = vec![Datum::from(0); table.natts];
    let mut nulls = vec![true; table.natts];
    // SAFETY: the tuple belongs to the table, whose descriptor we hold.
    unsafe {
        pg_sys::heap_deform_tuple(tuple, table.desc, values.as_mut_ptr(), nulls.as_mut_ptr())
    };
    Row { values, nulls }
}

/// A fresh snapshot for a scan: the latest in READ COMMITTED (so rows committed since the
/// statement started, e.g. by the previous strict-mode claimer, are seen), the transaction's
/// own under REPEATABLE READ and SERIALIZABLE. Registered; free with [`release_snapshot`].
pub fn fresh_snapshot() -> pg_sys::Snapshot {
    // SAFETY: snapshot management as the executor does it.
    unsafe {
        let snapshot = if uses_transaction_snapshot() {
            pg_sys::GetTransactionSnapshot()
        } else {
            pg_sys::GetLatestSnapshot()
        };
        pg_sys::RegisterSnapshot(snapshot)
    }
}

pub fn release_snapshot(snapshot: pg_sys::Snapshot) {
    // SAFETY: registered by fresh_snapshot.
    unsafe { pg_sys::UnregisterSnapshot(snapshot) };
}

/// The current transaction's start time (SQL now()).
pub fn now() -> i64 {
    // SAFETY: a plain read.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The wall clock (SQL clock_timestamp()).
pub fn clock() -> i64 {
    // SAFETY: a plain read.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// REPEATABLE READ or SERIALIZABLE (xact.h's IsolationUsesXactSnapshot).
pub fn uses_transaction_snapshot() -> bool {
    // SAFETY: a plain read of the isolation level.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// SERIALIZABLE (xact.h's IsolationIsSerializable).
pub fn serializable() -> bool {
    // SAFETY: a plain read of the isolation level.
    unsafe { pg_sys::XactIsoLevel == pg_sys::XACT_SERIALIZABLE as i32 }
}

/// executor.h's GetPerTupleExprContext.
unsafe fn per_tuple_econtext(estate: *mut pg_sys::EState) -> *mut pg_sys::ExprContext {
    unsafe {
        if (*estate).es_per_tuple_exprcontext.is_null() {
            pg_sys::MakePerTupleExprContext(estate)
        } else {
            (*estate).es_per_tuple_exprcontext
        }
    }
}

/// htup_details.h's HeapTupleIsHeapOnly: the update was HOT (no new index entries needed).
unsafe fn heap_only(tuple: pg_sys::HeapTuple) -> bool {
    unsafe { (*(*tuple).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0 }
}
