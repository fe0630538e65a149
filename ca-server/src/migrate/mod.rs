//! Moving in and out: import of a puppetserver `cadir` (or Puppet 3's `ssldir/ca`) and export to
//! puppetserver's layout (§6), so nobody is locked in.

mod export;
mod import;
mod layout;

pub use export::{export, ExportReport};
pub use import::{import, ImportReport};
