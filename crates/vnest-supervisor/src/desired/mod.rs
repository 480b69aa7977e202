//! What the host should hold for one VirtualCluster, as pure functions.

pub mod certificates;
pub mod namespaces;
pub mod quota;
