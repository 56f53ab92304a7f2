//! `cargo xtask db`: a throwaway MariaDB for development.

use crate::support::mariadb::MariaDb;
use crate::support::{Result, provision};

pub fn run() -> Result {
    provision::ensure_mariadb()?;
    let db = MariaDb::start()?;
    println!("DATABASE_URL={}", db.url());
    eprintln!("xtask: MariaDB is up; press Ctrl-C to stop it and delete its data");
    db.wait();
    Ok(())
}
