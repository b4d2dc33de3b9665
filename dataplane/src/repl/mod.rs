//! Multi-datacenter replication: cluster manager, realtime, fullsync, proxy_get.

pub mod admin;
pub mod cli;

use std::rc::Rc;

use crate::runtime::Core;

/// Starts this core's replication tasks.
pub fn start_core(_c: &Rc<Core>) {}
