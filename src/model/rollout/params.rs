//! A rollout's parameters as the scenario declares them (built and validated by `scenario`,
//! re-exported there): which strategy, how traffic is steered, and every strategy's knobs.

use crate::model::analysis::Analysis;
use crate::model::time::Duration;
use crate::model::units::CountOrShare;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyKind {
    Recreate,
    Rolling,
    BlueGreen,
    Canary,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Recreate => "recreate",
            StrategyKind::Rolling => "rolling",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// Atomic weighted VIP at the gateway: weights per version, applied to new connections.
    Sdn,
    /// Traffic share follows ready replica counts (a Kubernetes Service).
    Replicas,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RollingParams {
    pub max_surge: CountOrShare,
    pub max_unavailable: CountOrShare,
    pub min_ready: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlueGreenParams {
    pub scale_down_delay: Duration,
    /// Judge the new set with `Rollout::analysis` after the switch, while the old set is still
    /// kept; on failure switch back (see docs/scenario.md for why this is not pre-switch).
    pub preview_analysis: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanaryStep {
    /// Canary share in basis points (1 = 0.01 %, 10000 = 100 %).
    pub weight_bp: u32,
    /// None on the last step, or where the file gives no pause: go on at once.
    pub pause: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CanaryParams {
    /// Strictly increasing weights, the last ≤ 100 %. Reaching 100 % promotes.
    pub steps: Vec<CanaryStep>,
}

#[derive(Clone, Debug)]
pub struct Rollout {
    pub service: String,
    /// A version of `service` other than its starting version.
    pub to: String,
    pub at: Duration,
    pub strategy: StrategyKind,
    pub steering: Steering,
    pub propagation_delay: Duration,
    /// Parameters of every strategy are kept (defaults where absent) so that a sweep over
    /// `rollout.strategy` needs one file.
    pub rolling: RollingParams,
    pub blue_green: BlueGreenParams,
    pub canary: CanaryParams,
    /// From `[rollout.canary] analysis`; used by canary and by blue-green's preview analysis.
    pub analysis: Option<Analysis>,
}
