//! The per-container supervisor: the container init's parent, which keeps its logs and
//! records how it ended. (The process itself comes with the engine's start path.)

pub mod logs;
