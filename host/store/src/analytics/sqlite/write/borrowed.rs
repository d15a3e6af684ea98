//! A prepared statement whose text values borrow the caller's strings.
//!
//! `rusqlite` binds every text value `SQLITE_TRANSIENT`: SQLite allocates
//! and copies it at bind time, frees it at the next bind, and copies it
//! once more into the row's record. For a raw event row (the original
//! object, names, guids: most of its bytes) that first copy and its
//! allocation were a tenth of the analytics writer's time. Here text is
//! bound `SQLITE_STATIC`: SQLite reads it where it is, which is sound only
//! while the string outlives the binding, so the statement carries the
//! strings' lifetime and is finalized when it drops.

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr;

use rusqlite::{Connection, ffi};

/// One prepared statement, finalized on drop. `'data` is the lifetime of
/// every string bound to it.
pub(super) struct BorrowingStatement<'conn, 'data> {
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    _conn: PhantomData<&'conn Connection>,
    _data: PhantomData<&'data str>,
}

impl<'conn, 'data> BorrowingStatement<'conn, 'data> {
    pub fn prepare(conn: &'conn Connection, sql: &str) -> rusqlite::Result<Self> {
        // SAFETY: the handle belongs to `conn`, which this statement
        // borrows for its whole life; it is used on this thread only.
        let db = unsafe { conn.handle() };
        let mut stmt = ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        // SAFETY: `sql` is valid for `len` bytes (no terminator needed when
        // the length is given); `stmt` receives the new statement.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut stmt, ptr::null_mut())
        };
        let statement = BorrowingStatement {
            db,
            stmt,
            _conn: PhantomData,
            _data: PhantomData,
        };
        statement.check(rc)?;
        if statement.stmt.is_null() {
            return Err(rusqlite::Error::InvalidQuery);
        }
        Ok(statement)
    }

    /// Every bind and step ends here (about fifty times a row), so the
    /// success path is inlined and the error path kept out of line.
    #[inline]
    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    #[cold]
    fn error(&self, rc: c_int) -> rusqlite::Error {
        // SAFETY: `db` is open; the message is copied before any other call.
        let message = unsafe {
            let m = ffi::sqlite3_errmsg(self.db);
            (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
        };
        rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
    }

    /// Binds text (1-based index) without copying it.
    pub fn text(&mut self, index: c_int, value: &'data str) -> rusqlite::Result<()> {
        // SAFETY: `value` lives for `'data`, which outlives this statement
        // (finalized on drop) and so every step that reads the binding.
        unsafe { self.bind_text(index, value, ffi::SQLITE_STATIC()) }
    }

    /// Binds text that SQLite copies: for a value made for this one row.
    pub fn text_copied(&mut self, index: c_int, value: &str) -> rusqlite::Result<()> {
        // SAFETY: SQLite copies `value` before the call returns.
        unsafe { self.bind_text(index, value, ffi::SQLITE_TRANSIENT()) }
    }

    /// # Safety
    ///
    /// With `SQLITE_STATIC`, `value` must stay valid until the parameter
    /// is bound again or the statement is finalized.
    unsafe fn bind_text(
        &mut self,
        index: c_int,
        value: &str,
        destructor: ffi::sqlite3_destructor_type,
    ) -> rusqlite::Result<()> {
        let len = c_int::try_from(value.len()).map_err(|_| {
            rusqlite::Error::ToSqlConversionFailure("text longer than 2 GiB".into())
        })?;
        // SAFETY: a live statement; `value` is valid for `len` bytes, and
        // for as long as SQLite keeps it by the caller's contract.
        let rc = unsafe {
            ffi::sqlite3_bind_text(self.stmt, index, value.as_ptr().cast(), len, destructor)
        };
        self.check(rc)
    }

    pub fn int(&mut self, index: c_int, value: i64) -> rusqlite::Result<()> {
        // SAFETY: a live statement; integers are copied.
        self.check(unsafe { ffi::sqlite3_bind_int64(self.stmt, index, value) })
    }

    pub fn real(&mut self, index: c_int, value: f64) -> rusqlite::Result<()> {
        // SAFETY: a live statement; floats are copied.
        self.check(unsafe { ffi::sqlite3_bind_double(self.stmt, index, value) })
    }

    pub fn null(&mut self, index: c_int) -> rusqlite::Result<()> {
        // SAFETY: a live statement.
        self.check(unsafe { ffi::sqlite3_bind_null(self.stmt, index) })
    }

    /// Runs a statement that returns no rows, then resets it for the next
    /// bindings (which replace these one by one).
    pub fn execute(&mut self) -> rusqlite::Result<()> {
        // SAFETY: a live statement with its parameters bound.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        // SAFETY: as above; reset returns the step's error again, and
        // keeps the bindings.
        let reset = unsafe { ffi::sqlite3_reset(self.stmt) };
        match rc {
            ffi::SQLITE_DONE => self.check(reset),
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            _ => self.check(if reset != ffi::SQLITE_OK { reset } else { rc }),
        }
    }
}

impl Drop for BorrowingStatement<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: finalizing a live statement once; the connection is
        // still open (it outlives `'conn`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_borrowed_text_and_reports_errors_with_sqlite_messages() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT NOT NULL UNIQUE, b INTEGER, c REAL, d TEXT)")
            .unwrap();
        let rows: Vec<String> = (0..3).map(|i| format!("row {i}")).collect();
        {
            let mut stmt =
                BorrowingStatement::prepare(&conn, "INSERT INTO t VALUES (?1, ?2, ?3, ?4)")
                    .unwrap();
            for (i, text) in rows.iter().enumerate() {
                stmt.text(1, text).unwrap();
                stmt.int(2, i as i64).unwrap();
                stmt.real(3, i as f64 / 2.0).unwrap();
                stmt.null(4).unwrap();
                stmt.execute().unwrap();
            }
            // A constraint failure comes back as SQLite's error, and the
            // statement stays usable.
            stmt.text(1, &rows[0]).unwrap();
            let e = stmt.execute().unwrap_err();
            assert!(e.to_string().contains("UNIQUE"), "{e}");
            let last = String::from("last");
            stmt.text_copied(1, &last).unwrap();
            drop(last);
            stmt.execute().unwrap();
        }
        let got: Vec<(String, i64, f64, Option<String>)> = conn
            .prepare("SELECT a, b, c, d FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![
                ("row 0".into(), 0, 0.0, None),
                ("row 1".into(), 1, 0.5, None),
                ("row 2".into(), 2, 1.0, None),
                ("last".into(), 2, 1.0, None),
            ]
        );
        assert!(BorrowingStatement::prepare(&conn, "INSERT INTO nowhere VALUES (1)").is_err());
    }
}
