//! What vnest's controllers (the supervisor, the syncer, the development
//! host's installers) share: writing to Kubernetes, health endpoints, logs.

pub mod apply;
pub mod health;
pub mod logging;
