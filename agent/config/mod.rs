//! What kiln reads before it touches a host: Ansible inventories, Kayobe configuration layering,
//! variable files (plain or encrypted), extra vars, and Ansible's variable precedence.

pub mod allocation;
pub mod embedded;
pub mod error;
pub mod extra_vars;
pub mod inventory;
pub mod kayobe;
pub mod vars;
pub mod varsfile;

pub use error::ConfigError;
