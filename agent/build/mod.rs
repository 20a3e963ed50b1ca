pub mod image_tags;
pub mod push;
pub mod record;
pub mod registry;
