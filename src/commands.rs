//! Commands added for the user experience (issue 9), one module each, plus the
//! did-you-mean helpers they and the older commands share.

pub mod complete;
pub mod init;
pub mod list;
pub mod man;
pub mod suggest;
pub mod usage;
pub mod validate;
