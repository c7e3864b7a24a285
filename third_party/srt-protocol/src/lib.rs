// STREAMSTACK: a path dependency's warnings are not capped as a registry dependency's are
// (cargo passes --cap-lints allow to those); newer compilers warn on this upstream code.
#![allow(warnings)]

pub mod access;
pub mod connection;
pub mod listener;
pub mod options;
pub mod packet;
pub mod protocol;
pub mod settings;
pub mod statistics;
