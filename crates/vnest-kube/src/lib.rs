//! What vnest's controllers (the supervisor, the syncer, the development
//! host's installers) share about writing to Kubernetes.

pub mod apply;
pub mod health;
