//! The image pipeline as a library: what the build modules and verbs share, with no SSH and no
//! engine in it (`ARCHITECTURE.md`).

pub mod if_changed;
pub mod image_tags;
pub mod ini;
pub mod inputs;
pub mod kolla;
pub mod manifest_list;
pub mod merge_yaml;
pub mod push;
pub mod record;
pub mod registry;
pub mod scan;
pub mod words;
