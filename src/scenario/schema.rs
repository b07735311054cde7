//! The keys the scenario format accepts, as one tree.
//!
//! Both the validator (which reports every key not listed here as unknown, with a "did you
//! mean") and the override paths of `[sweep]` and `--set` (which may only address keys listed
//! here) read this tree, so the two can never disagree about what a key is.

/// One accepted key and what may appear under it.
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
}

/// How an override path continues below a key.
pub(crate) enum Kind {
    /// A value; an override path ends here.
    Leaf,
    /// A table (or a value that may also be written as an inline table, like `jitter`); a path
    /// may end here (replacing the whole value) or continue into the listed keys.
    Table(&'static [Field]),
    /// A table of tables keyed by free names (`[service.web]`, `versions.v2`).
    Named(&'static [Field]),
    /// An array of tables (`[[link]]`): elements addressed by 0-based index, or as `by` says.
    Elements(&'static [Field], Addr),
}

/// How elements of an array of tables may be addressed besides their index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addr {
    /// By the element's `name`.
    Name,
    /// By its two ends joined with `-` (`client-gw`), for links.
    Ends,
    /// By index only (events have no name).
    Index,
}

const fn leaf(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Leaf,
    }
}

pub(crate) const SCENARIO: &[Field] = &[
    leaf("name"),
    leaf("description"),
    leaf("seed"),
    leaf("duration"),
    leaf("warmup"),
    leaf("window"),
    leaf("backend"),
];

pub(crate) const NODE: &[Field] = &[leaf("name"), leaf("kind")];

pub(crate) const READINESS: &[Field] = &[
    leaf("initial_delay"),
    leaf("period"),
    leaf("failure_threshold"),
];

pub(crate) const TERMINATION: &[Field] = &[leaf("pre_stop"), leaf("grace")];

pub(crate) const VERSION: &[Field] = &[
    leaf("service_time"),
    leaf("startup"),
    leaf("error_rate"),
    leaf("image"),
    leaf("build"),
    leaf("command"),
    leaf("env"),
    leaf("ready_path"),
];

pub(crate) const SERVICE: &[Field] = &[
    leaf("replicas"),
    leaf("port"),
    leaf("gateway"),
    leaf("version"),
    leaf("workers"),
    Field {
        name: "readiness",
        kind: Kind::Table(READINESS),
    },
    Field {
        name: "termination",
        kind: Kind::Table(TERMINATION),
    },
    leaf("cpu"),
    leaf("memory"),
    Field {
        name: "versions",
        kind: Kind::Named(VERSION),
    },
];

pub(crate) const JITTER: &[Field] = &[leaf("amount"), leaf("distribution")];

pub(crate) const LOSS: &[Field] = &[leaf("model"), leaf("p"), leaf("r"), leaf("h"), leaf("k")];

pub(crate) const LINK: &[Field] = &[
    leaf("between"),
    leaf("bandwidth"),
    leaf("delay"),
    Field {
        name: "jitter",
        kind: Kind::Table(JITTER),
    },
    Field {
        name: "loss",
        kind: Kind::Table(LOSS),
    },
    leaf("queue"),
    leaf("trace"),
    leaf("reorder"),
    leaf("capture"),
    leaf("emulator"),
];

pub(crate) const POLICY: &[Field] = &[leaf("name"), leaf("from"), leaf("to"), leaf("ports")];

pub(crate) const WORKLOAD: &[Field] = &[
    leaf("name"),
    leaf("from"),
    leaf("to"),
    leaf("rate"),
    leaf("arrivals"),
    leaf("schedule"),
    leaf("connections"),
    leaf("max_requests_per_connection"),
    leaf("request"),
    leaf("response"),
    leaf("timeout"),
];

pub(crate) const ROLLING: &[Field] = &[
    leaf("max_surge"),
    leaf("max_unavailable"),
    leaf("min_ready"),
];

pub(crate) const BLUE_GREEN: &[Field] = &[leaf("scale_down_delay"), leaf("preview_analysis")];

pub(crate) const ANALYSIS: &[Field] = &[
    leaf("interval"),
    leaf("max_error_rate"),
    leaf("max_p99"),
    leaf("failure_limit"),
];

pub(crate) const CANARY_STEP: &[Field] = &[leaf("weight"), leaf("pause")];

pub(crate) const CANARY: &[Field] = &[
    leaf("steps"),
    Field {
        name: "analysis",
        kind: Kind::Table(ANALYSIS),
    },
    leaf("judge"),
];

pub(crate) const ROLLOUT: &[Field] = &[
    leaf("service"),
    leaf("to"),
    leaf("at"),
    leaf("strategy"),
    leaf("steering"),
    leaf("propagation_delay"),
    Field {
        name: "rolling",
        kind: Kind::Table(ROLLING),
    },
    Field {
        name: "blue_green",
        kind: Kind::Table(BLUE_GREEN),
    },
    Field {
        name: "canary",
        kind: Kind::Table(CANARY),
    },
];

pub(crate) const EVENT: &[Field] = &[
    leaf("at"),
    leaf("action"),
    leaf("duration"),
    leaf("link"),
    leaf("bandwidth"),
    leaf("delay"),
    Field {
        name: "jitter",
        kind: Kind::Table(JITTER),
    },
    Field {
        name: "loss",
        kind: Kind::Table(LOSS),
    },
    leaf("queue"),
    leaf("service"),
    leaf("version"),
    leaf("count"),
    leaf("workload"),
    leaf("rate"),
];

/// `[sweep]` holds `repetitions` and override paths; it is read separately and is not an
/// override target itself.
pub(crate) const ROOT: &[Field] = &[
    Field {
        name: "scenario",
        kind: Kind::Table(SCENARIO),
    },
    Field {
        name: "node",
        kind: Kind::Elements(NODE, Addr::Name),
    },
    Field {
        name: "service",
        kind: Kind::Named(SERVICE),
    },
    Field {
        name: "link",
        kind: Kind::Elements(LINK, Addr::Ends),
    },
    Field {
        name: "policy",
        kind: Kind::Elements(POLICY, Addr::Name),
    },
    Field {
        name: "workload",
        kind: Kind::Elements(WORKLOAD, Addr::Name),
    },
    Field {
        name: "rollout",
        kind: Kind::Table(ROLLOUT),
    },
    Field {
        name: "event",
        kind: Kind::Elements(EVENT, Addr::Index),
    },
    leaf("sweep"),
];

pub(crate) fn names(fields: &[Field]) -> impl Iterator<Item = &'static str> + '_ {
    fields.iter().map(|f| f.name)
}

pub(crate) fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}

/// The closest of `candidates` to a misspelt `word`, if any is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos_only() {
        assert_eq!(did_you_mean("bandwith", names(LINK)), Some("bandwidth"));
        assert_eq!(did_you_mean("dealy", names(LINK)), Some("delay"));
        assert_eq!(did_you_mean("colour", names(LINK)), None);
    }
}
