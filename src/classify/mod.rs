//! Step 4 of the pipeline, **classify**: how what was built differs from what is live, and the least
//! destructive way to converge (pure), with the record that lets a StatefulSet replace survive a restart.

pub mod change;
pub mod diff;
pub mod replace;
