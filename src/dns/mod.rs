//! `dns`: the records a relay needs, what the DNS publishes, and the zone-file fixes.

pub mod check;
pub mod host;
pub mod records;
pub mod system;
pub mod zonefile;
