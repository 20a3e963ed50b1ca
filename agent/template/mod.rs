//! Template layer: minijinja with Ansible's and Kayobe's filters.

pub mod ipaddr;
pub mod kayobe_net;
