//! The catalog: the resources ([`model`]) and their typed, validated storage
//! ([`repo`]) on top of the state store.

pub mod model;
pub mod repo;

pub use model::*;
pub use repo::{CatalogError, CatalogRepo, Page, ReleaseAction};
