//! The seed tree and the one PRNG every random component uses.
//!
//! Every random component (a workload's arrivals, a replica's service times, a link's loss and
//! jitter, the gateway's steering choices) owns its own [`Rng`], seeded by [`SeedTree::seed_for`]
//! from the scenario seed and the component's stable name, e.g. `"link/client-gw/down"`. Adding a
//! component therefore never shifts another component's random sequence, and a run records the
//! seeds it used. The generator is xoshiro256++ (rand_xoshiro): fast, small state, and its output
//! for a seed is fixed by its specification, so a seed means the same sequence in every version.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Derives per-component seeds from the scenario seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedTree {
    root: u64,
}

impl SeedTree {
    pub fn new(root: u64) -> Self {
        SeedTree { root }
    }
    pub fn root(&self) -> u64 {
        self.root
    }
    /// The seed of the component called `name`: FNV-1a of the name mixed with the root through
    /// SplitMix64. Stable across versions and platforms.
    pub fn seed_for(&self, name: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        splitmix64(self.root ^ splitmix64(h))
    }
    /// A generator for the component called `name`.
    pub fn rng(&self, name: &str) -> Rng {
        Rng::new(self.seed_for(name))
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A component's random number generator.
#[derive(Clone, Debug)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in the open interval (0, 1): safe to take the logarithm of.
    pub fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n) without modulo bias worth mentioning for n ≪ 2^64 (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.open01() < p
    }
    /// A standard normal deviate (Box–Muller; one of the pair is discarded so that the sequence
    /// does not depend on call history beyond the generator state).
    pub fn std_normal(&mut self) -> f64 {
        let u1 = self.open01();
        let u2 = self.open01();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_get_distinct_stable_seeds() {
        let t = SeedTree::new(7);
        assert_eq!(
            t.seed_for("link/a-b"),
            SeedTree::new(7).seed_for("link/a-b")
        );
        assert_ne!(t.seed_for("link/a-b"), t.seed_for("link/b-a"));
        assert_ne!(t.seed_for("x"), SeedTree::new(8).seed_for("x"));
    }

    #[test]
    fn open01_is_open_and_mean_half() {
        let mut r = Rng::new(1);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = r.open01();
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.005);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(3);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }
}
