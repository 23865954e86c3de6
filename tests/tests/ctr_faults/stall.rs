//! A CLI with 32 file descriptors; a supervisor stopped with SIGSTOP.
