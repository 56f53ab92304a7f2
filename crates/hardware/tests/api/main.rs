//! API tests: the real service over real HTTP on a real MariaDB.
//!
//! Each `#[sqlx::test]` gets a fresh database (created and dropped by sqlx),
//! with the migrations in `sql/` applied unless the test says otherwise.
//! `DATABASE_URL` must name a user allowed to create databases; `cargo xtask
//! test` provides a throwaway MariaDB.

mod availability;
mod contract;
mod drills;
mod fault_proxy;
mod hardening;
mod helpers;
mod inventory;
mod migrations;
mod shared_cache;
mod writes;
