//! Placeholder: written by the registry work.
