//! Rate limiting and throttling.

pub mod calendar;
