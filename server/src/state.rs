//! State shared by every handler.

use std::path::PathBuf;

use crate::db::Db;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub data_dir: PathBuf,
}
