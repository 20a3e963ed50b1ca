//! Helpers the modules share that are not Ansible modules themselves: lenient argument decoding
//! (`args`), Ansible's common file arguments and attribute changes (`fileattrs`), the line-editing
//! core of lineinfile/blockinfile/replace/ini_file (`lineedit`), Python's `re` dialect (`pyre`),
//! system probes (`sysutil`), LVM reports (`lvm`) curl-less HTTP on the host (`curl`) and the
//! container engines' CLI (`container`).
//! `modules/` itself lists modules only.

pub mod args;
pub mod container;
pub mod curl;
pub mod fileattrs;
pub mod lineedit;
pub mod lvm;
pub mod pyre;
pub mod sysutil;
