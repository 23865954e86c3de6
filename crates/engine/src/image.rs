//! Placeholder: written by the image work.
