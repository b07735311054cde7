//! Quantities with units that the models compute with: bit rates, sizes, request rates, queue
//! limits, counts or shares. Their textual forms (`"100Mbit"`, `"25%"`) are parsed by
//! `scenario::units`; `Display` writes them back in the same form.

use std::fmt;

use crate::model::time::Duration;

/// A bit rate in bits per second (decimal prefixes: k = 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BitRate(pub u64);

impl BitRate {
    pub fn bits_per_sec(self) -> u64 {
        self.0
    }
    /// Time to serialize `bytes` at this rate.
    pub fn transmit_time(self, bytes: u64) -> Duration {
        Duration::from_nanos(
            ((u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(self.0))) as u64,
        )
    }
}

impl fmt::Display for BitRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (div, unit) in [
            (1_000_000_000, "Gbit"),
            (1_000_000, "Mbit"),
            (1_000, "kbit"),
        ] {
            if b >= div && b % div == 0 {
                return write!(f, "{}{unit}", b / div);
            }
        }
        write!(f, "{b}bit")
    }
}

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (div, unit) in [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if b >= div && b % div == 0 {
                return write!(f, "{}{unit}", b / div);
            }
        }
        write!(f, "{b}B")
    }
}

/// A request rate in requests per second.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct RequestRate(pub f64);

impl RequestRate {
    pub fn per_sec(self) -> f64 {
        self.0
    }
    /// Mean gap between two requests at this rate.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// A count, or a share of some total that is resolved later (`"25%"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CountOrShare {
    Count(u32),
    /// A fraction in [0, 1].
    Share(f64),
}

impl CountOrShare {
    /// Resolves against `total` the way Kubernetes does: a surge rounds up, an unavailability
    /// rounds down (`round_up` says which).
    pub fn resolve(self, total: u32, round_up: bool) -> u32 {
        match self {
            CountOrShare::Count(n) => n,
            CountOrShare::Share(s) => {
                // Work in basis points to avoid 0.1 + 0.2 style surprises: 25% of 4 is exactly 1.
                let exact = s * f64::from(total);
                let r = (exact * 1e9).round() / 1e9;
                if round_up {
                    r.ceil() as u32
                } else {
                    r.floor() as u32
                }
            }
        }
    }
}

impl fmt::Display for CountOrShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountOrShare::Count(n) => write!(f, "{n}"),
            CountOrShare::Share(s) => write!(f, "{}%", s * 100.0),
        }
    }
}

/// `"200 packets"` or a size such as `"256KiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    Packets(u64),
    Bytes(u64),
}

impl fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueLimit::Packets(n) => write!(f, "{n} packets"),
            QueueLimit::Bytes(b) => write!(f, "{}", ByteSize(*b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_time_is_exact() {
        // 1500 B at 100 Mbit/s = 120 us.
        assert_eq!(
            BitRate(100_000_000).transmit_time(1500),
            Duration::from_micros(120)
        );
    }
}
