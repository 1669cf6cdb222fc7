//! Deterministic simulation of Petrel (issue 3): the real SMTP and POP3 state machines and the
//! real store on a simulated disk, clock and network, driven from one 64-bit seed.

pub mod check;
pub mod clients;
pub mod fs;
pub mod pop;
pub mod rng;
pub mod sieve;
pub mod sim;

pub use sim::{Outcome, RunOptions, run_seed};
