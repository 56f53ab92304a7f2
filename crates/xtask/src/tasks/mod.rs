//! One module per `cargo xtask` task.

pub mod audit;
pub mod bench;
pub mod cluster;
pub mod db;
pub mod deps;
pub mod drill;
pub mod e2e;
pub mod fuzz;
mod hostile;
pub mod lint;
pub mod screenshots;
pub mod sqlx_prepare;
pub mod stack;
pub mod test;
