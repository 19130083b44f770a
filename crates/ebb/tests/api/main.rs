//! The integration suite: one binary, every test run against SQLite and PostgreSQL.
//!
//! Each test starts ebb in-process on a random port with a fresh database (a new SQLite file, or a new
//! PostgreSQL database), talks to it over HTTP with requests signed as Cobo's SDK signs them, and checks
//! every response's signature.

mod chains;
mod helpers;

mod approvals;
mod auth;
mod balances;
mod campaign;
mod coingate;
mod console;
mod crash;
mod evm;
mod faults;
mod kyt;
mod links;
mod mail;
mod merchants_orders;
mod ops;
mod payins;
mod payouts;
mod prices;
mod refunds;
mod scopes;
mod screening;
mod webhooks;
