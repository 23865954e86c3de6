//! `kill -9` at every step of `image import` and `volume rm`.
