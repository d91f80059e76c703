//! Eddy's RDMA foundation (issue 17): one-sided reads of registered memory
//! over libfabric, one code path for every provider (`verbs;ofi_rxm`,
//! `efa`, and `tcp;ofi_rxm` where there is no RDMA hardware). Nothing else
//! in Eddy uses it yet; docs/RDMA.md says what exists and what is next.
//!
//! libfabric's data-path calls are inline functions, so a small C shim
//! (shim/eddy_fabric.c) exports them; `sys` declares it and this crate's
//! safe types are the only callers.

mod backoff;
mod domain;
mod error;
mod fabric;
mod limits;
mod mr;
mod progress;
mod read;
mod sys;

pub use domain::FabricInfo;
pub use error::RdmaError;
pub use fabric::{Fabric, FabricOptions, FabricStats, PeerId};
pub use limits::{MemlockReport, memlock_report, raise_memlock};
pub use mr::{RegisteredBuf, Registration, RemoteKey};
pub use progress::Progress;
pub use read::ReadOp;
