//! The catalog: the resources ([`model`]) and their typed, validated storage
//! ([`repo`]) on top of the state store.

pub mod api_keys;
pub mod artifacts;
pub mod grants;
pub mod model;
pub mod repo;
pub mod store;

pub use api_keys::{ApiKey, ApiKeyView};
pub use model::*;
pub use repo::{CatalogError, CatalogRepo, Page, ReleaseAction, Stored, Updated};
