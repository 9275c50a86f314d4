//! Wire types: operations (see the module docs of `models::protocol`): `GET /healthz`,
//! `GET /readyz`.

use serde::{Deserialize, Serialize};

/// A check that passed. A failing check answers an error (`500` with an `ErrorBody`) instead.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
}

/// `GET /healthz`: the server runs and its database answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: CheckStatus,
    /// The server's version (`b3o --version`).
    pub version: String,
    /// A database round trip.
    pub database: CheckStatus,
    /// When this instance's database was created.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub instance_created_at: String,
}

/// `GET /readyz`: this replica takes new work (a load balancer may send it requests). While it
/// starts or shuts down it answers `503` with an `ErrorBody` instead (`starting`,
/// `shutting_down`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub status: CheckStatus,
}
