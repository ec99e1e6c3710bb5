//! The engines that send load: closed-model journeys on goose, and the open-rate driver.

pub mod closed;
pub mod conn;
pub mod open;
