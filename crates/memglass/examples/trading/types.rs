//! Types shared by the trading producer and observer examples.

use memglass::{FixedStr, Observe, Seqlock};
use std::sync::atomic::AtomicU64;

/// Top of book, published under one seqlock so bid and ask always match.
#[derive(Observe, Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Quote {
    #[observe(unit = "USD", help = "best bid")]
    pub bid_price: f64,
    #[observe(unit = "USD", help = "best ask")]
    pub ask_price: f64,
    #[observe(unit = "shares")]
    pub bid_size: u32,
    #[observe(unit = "shares")]
    pub ask_size: u32,
    #[observe(unit = "ns", discrete, help = "exchange timestamp")]
    pub timestamp_ns: u64,
}

/// One instrument's state.
#[derive(Observe)]
#[repr(C)]
pub struct Instrument {
    #[observe(discrete)]
    pub symbol: FixedStr<8>,
    pub quote: Seqlock<Quote>,
    #[observe(unit = "shares", help = "signed position")]
    pub position: i64,
    #[observe(counter, help = "orders sent")]
    pub orders: AtomicU64,
    #[observe(counter, help = "fills received")]
    pub fills: AtomicU64,
    #[observe(unit = "USD", help = "realized profit and loss")]
    pub pnl: f64,
}
