//! The `ebb` program: command line, configuration, wiring. `main.rs` only calls [`cli::main`].

pub mod app;
pub mod cli;
pub mod config;
pub mod dev;

pub use app::Application;
pub use config::Settings;
