//! Units of the scenario format (SCENARIO.md, "Units"), parsed from their textual form.
//!
//! Every parser takes the text as written and returns a typed value or a [`UnitError`] whose
//! message says what was expected, so the caller can attach file, line and key path. The same
//! parsers serve the CLI flags of `sdnbed serve` and `sdnbed load`. The value types themselves
//! live in [`crate::model::units`] (the models compute with them) and are re-exported here.

use std::path::Path;
use std::sync::Arc;

use crate::model::dist::Dist;
use crate::model::time::Duration;
pub use crate::model::units::{BitRate, ByteSize, CountOrShare, QueueLimit, RequestRate};

/// Why a unit did not parse; the message names the expected form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, UnitError> {
    Err(UnitError(msg.into()))
}

/// Splits `"12.5ms"` into `(12.5, "ms")`.
fn split_number(s: &str) -> Result<(f64, &str), UnitError> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')) || c == '_')
        })
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(end);
    let num = num.replace('_', "");
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((v, unit.trim())),
        _ => err(format!("`{s}` does not start with a number")),
    }
}

/// `"250us"`, `"10ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"100ns"`; a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let (v, unit) = split_number(s)?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" if v == 0.0 => 1.0,
        _ => {
            return err(format!(
                "`{s}` is not a duration; write e.g. \"250us\", \"10ms\", \"1.5s\" or \"2m\""
            ))
        }
    };
    if v < 0.0 {
        return err(format!("`{s}`: a duration cannot be negative"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `"500kbit"`, `"100Mbit"`, `"1Gbit"`, `"64000bit"`; also `kbps`/`Mbps`/`Gbps` (bits, decimal).
pub fn parse_bitrate(s: &str) -> Result<BitRate, UnitError> {
    let (v, unit) = split_number(s)?;
    let scale = match unit {
        "bit" | "bps" => 1.0,
        "kbit" | "kbps" | "Kbit" => 1e3,
        "Mbit" | "mbit" | "Mbps" => 1e6,
        "Gbit" | "gbit" | "Gbps" => 1e9,
        _ => {
            return err(format!(
                "`{s}` is not a bit rate; write e.g. \"500kbit\", \"100Mbit\" or \"1Gbit\""
            ))
        }
    };
    let bits = (v * scale).round();
    if bits < 1.0 {
        return err(format!("`{s}`: a bit rate must be positive"));
    }
    Ok(BitRate(bits as u64))
}

/// `"200B"`, `"4KiB"`, `"1MB"`, `"1MiB"`; a bare integer is bytes.
pub fn parse_size(s: &str) -> Result<ByteSize, UnitError> {
    let (v, unit) = split_number(s)?;
    let scale = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return err(format!(
                "`{s}` is not a size; write e.g. \"200B\", \"4KiB\" or \"1MB\""
            ))
        }
    };
    if v < 0.0 {
        return err(format!("`{s}`: a size cannot be negative"));
    }
    Ok(ByteSize((v * scale).round() as u64))
}

/// `"2000/s"`, `"30/ms"`, `"120/m"`. Zero is rejected: a workload that sends nothing is written
/// by leaving it out.
pub fn parse_rate(s: &str) -> Result<RequestRate, UnitError> {
    let Some((num, per)) = s.split_once('/') else {
        return err(format!(
            "`{s}` is not a request rate; write e.g. \"2000/s\" or \"30/ms\""
        ));
    };
    let (v, rest) = split_number(num)?;
    if !rest.is_empty() {
        return err(format!(
            "`{s}` is not a request rate; write e.g. \"2000/s\""
        ));
    }
    let per = per.trim();
    let secs = match per {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return err(format!(
                "`{s}`: unknown time unit `{per}` in a rate; use /s, /ms, /m or /h"
            ))
        }
    };
    if v <= 0.0 {
        return err(format!("`{s}`: a request rate must be greater than zero"));
    }
    Ok(RequestRate(v / secs))
}

/// `"0.1%"` or a plain fraction; must lie in [0, 1].
pub fn parse_ratio_str(s: &str) -> Result<f64, UnitError> {
    let t = s.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        split_number(p).and_then(|(v, rest)| {
            if rest.is_empty() {
                Ok(v / 100.0)
            } else {
                err(String::new())
            }
        })
    } else {
        split_number(t).and_then(|(v, rest)| {
            if rest.is_empty() {
                Ok(v)
            } else {
                err(String::new())
            }
        })
    }
    .map_err(|_| {
        UnitError(format!(
            "`{s}` is not a ratio; write e.g. \"0.1%\" or 0.001"
        ))
    })?;
    check_ratio(v)
}

/// Checks that a ratio given as a number lies in [0, 1].
pub fn check_ratio(v: f64) -> Result<f64, UnitError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        err(format!(
            "{v} is not a ratio between 0 and 1 (write a percentage as \"5%\")"
        ))
    }
}

/// `"25%"` as a share, or a non-negative integer as a count.
pub fn parse_count_or_share(s: &str) -> Result<CountOrShare, UnitError> {
    let t = s.trim();
    if t.ends_with('%') {
        let v = parse_ratio_str(t)?;
        Ok(CountOrShare::Share(v))
    } else {
        t.parse::<u32>().map(CountOrShare::Count).map_err(|_| {
            UnitError(format!(
                "`{s}` is neither a count (e.g. 1) nor a share (e.g. \"25%\")"
            ))
        })
    }
}

pub fn parse_queue(s: &str) -> Result<QueueLimit, UnitError> {
    let t = s.trim();
    if let Some(n) = t
        .strip_suffix("packets")
        .or_else(|| t.strip_suffix("packet"))
    {
        return n
            .trim()
            .parse::<u64>()
            .map(QueueLimit::Packets)
            .map_err(|_| {
                UnitError(format!(
                    "`{s}` is not a queue limit; write e.g. \"200 packets\" or \"256KiB\""
                ))
            });
    }
    parse_size(t).map(|b| QueueLimit::Bytes(b.0)).map_err(|_| {
        UnitError(format!(
            "`{s}` is not a queue limit; write e.g. \"200 packets\" or \"256KiB\""
        ))
    })
}

/// Parses a distribution. `base` is the directory that `empirical(path)` is relative to (the
/// scenario file's directory); an empirical file holds one duration per line (`"2.1ms"`, or a
/// bare number of milliseconds), `#` comments and blank lines ignored, in CSV or plain text.
pub fn parse_dist(s: &str, base: Option<&Path>) -> Result<Dist, UnitError> {
    let t = s.trim();
    let usage = "write e.g. \"const(2ms)\", \"exp(mean=2ms)\", \"uniform(1ms,3ms)\", \
                 \"normal(mean=5ms,sd=1ms)\", \"lognormal(median=2ms,p99=10ms)\", \
                 \"pareto(scale=1ms,shape=1.5)\" or \"empirical(path.csv)\"";
    let Some((name, rest)) = t.split_once('(') else {
        // A bare duration is a constant: `service_time = "2ms"`.
        return parse_duration(t)
            .map(Dist::Const)
            .map_err(|_| UnitError(format!("`{s}` is not a distribution; {usage}")));
    };
    let Some(args) = rest.strip_suffix(')') else {
        return err(format!("`{s}`: missing closing parenthesis"));
    };
    let name = name.trim();
    if name == "empirical" {
        return load_empirical(args.trim(), base);
    }
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    // Named (`mean=2ms`) or positional arguments, in the documented order.
    let arg = |key: &str, pos: usize| -> Result<&str, UnitError> {
        if let Some(v) = parts.iter().find_map(|p| {
            p.strip_prefix(key)
                .and_then(|r| r.trim_start().strip_prefix('='))
        }) {
            return Ok(v.trim());
        }
        match parts.get(pos) {
            Some(p) if !p.contains('=') && !p.is_empty() => Ok(p),
            _ => err(format!("`{s}`: missing `{key}`; {usage}")),
        }
    };
    let dur = |key: &str, pos: usize| -> Result<Duration, UnitError> {
        parse_duration(arg(key, pos)?).map_err(|e| UnitError(format!("`{s}`: {key}: {e}")))
    };
    let nonzero = |d: Duration, what: &str| -> Result<Duration, UnitError> {
        if d.is_zero() {
            err(format!("`{s}`: {what} must be greater than zero"))
        } else {
            Ok(d)
        }
    };
    let known: &[&str] = match name {
        "const" => &["value"],
        "exp" => &["mean"],
        "uniform" => &["low", "high"],
        "normal" => &["mean", "sd"],
        "lognormal" => &["median", "p99"],
        "pareto" => &["scale", "shape"],
        _ => return err(format!("`{s}`: unknown distribution `{name}`; {usage}")),
    };
    if parts.len() != known.len() {
        return err(format!(
            "`{s}`: {name} takes {} argument(s) ({})",
            known.len(),
            known.join(", ")
        ));
    }
    for p in &parts {
        if let Some((k, _)) = p.split_once('=') {
            if !known.contains(&k.trim()) {
                return err(format!(
                    "`{s}`: {name} has no argument `{}`; it takes {}",
                    k.trim(),
                    known.join(", ")
                ));
            }
        }
    }
    Ok(match name {
        "const" => Dist::Const(dur("value", 0)?),
        "exp" => Dist::Exp {
            mean: nonzero(dur("mean", 0)?, "mean")?,
        },
        "uniform" => {
            let (low, high) = (dur("low", 0)?, dur("high", 1)?);
            if high < low {
                return err(format!("`{s}`: the upper bound is below the lower bound"));
            }
            Dist::Uniform { low, high }
        }
        "normal" => Dist::Normal {
            mean: dur("mean", 0)?,
            sd: dur("sd", 1)?,
        },
        "lognormal" => {
            let (median, p99) = (nonzero(dur("median", 0)?, "median")?, dur("p99", 1)?);
            if p99 <= median {
                return err(format!("`{s}`: p99 must be greater than the median"));
            }
            Dist::LogNormal { median, p99 }
        }
        "pareto" => {
            let scale = nonzero(dur("scale", 0)?, "scale")?;
            let shape: f64 = arg("shape", 1)?
                .parse()
                .map_err(|_| UnitError(format!("`{s}`: shape must be a number")))?;
            if !(shape > 0.0 && shape.is_finite()) {
                return err(format!("`{s}`: shape must be greater than zero"));
            }
            Dist::Pareto { scale, shape }
        }
        _ => unreachable!(),
    })
}

fn load_empirical(path: &str, base: Option<&Path>) -> Result<Dist, UnitError> {
    let full = match base {
        Some(b) => b.join(path),
        None => Path::new(path).to_path_buf(),
    };
    let text = std::fs::read_to_string(&full).map_err(|e| {
        UnitError(format!(
            "empirical({path}): cannot read {}: {e}",
            full.display()
        ))
    })?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let field = line
            .split('#')
            .next()
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("")
            .trim();
        if field.is_empty() {
            continue;
        }
        let d = match field.parse::<f64>() {
            Ok(ms) if ms >= 0.0 => Duration::from_secs_f64(ms / 1e3),
            Ok(_) => {
                return err(format!(
                    "empirical({path}) line {}: negative duration",
                    i + 1
                ))
            }
            Err(_) => match parse_duration(field) {
                Ok(d) => d,
                // A header line is allowed as the first line.
                Err(_) if samples.is_empty() && i == 0 => continue,
                Err(e) => return err(format!("empirical({path}) line {}: {e}", i + 1)),
            },
        };
        samples.push(d);
    }
    if samples.is_empty() {
        return err(format!(
            "empirical({path}): {} holds no durations",
            full.display()
        ));
    }
    Ok(Dist::Empirical {
        source: path.to_string(),
        samples: Arc::new(samples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten ms").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rates_and_sizes() {
        assert_eq!(parse_bitrate("500kbit").unwrap(), BitRate(500_000));
        assert_eq!(parse_bitrate("1Gbit").unwrap(), BitRate(1_000_000_000));
        assert!(parse_bitrate("0Mbit").is_err());
        assert_eq!(parse_size("4KiB").unwrap(), ByteSize(4096));
        assert_eq!(parse_size("1MB").unwrap(), ByteSize(1_000_000));
        assert_eq!(parse_rate("30/ms").unwrap(), RequestRate(30_000.0));
        assert!(parse_rate("0/s").is_err());
        assert_eq!(
            parse_queue("200 packets").unwrap(),
            QueueLimit::Packets(200)
        );
        assert_eq!(parse_queue("256KiB").unwrap(), QueueLimit::Bytes(262_144));
        assert!((parse_ratio_str("0.1%").unwrap() - 0.001).abs() < 1e-15);
        assert!(parse_ratio_str("150%").is_err());
    }

    #[test]
    fn shares_round_like_kubernetes() {
        let s = parse_count_or_share("25%").unwrap();
        assert_eq!(s.resolve(4, true), 1);
        assert_eq!(s.resolve(10, true), 3);
        assert_eq!(s.resolve(10, false), 2);
        assert_eq!(parse_count_or_share("2").unwrap().resolve(10, true), 2);
    }

    #[test]
    fn distributions() {
        assert_eq!(
            parse_dist("const(2ms)", None).unwrap(),
            Dist::Const(Duration::from_millis(2))
        );
        assert_eq!(
            parse_dist("2ms", None).unwrap(),
            Dist::Const(Duration::from_millis(2))
        );
        assert_eq!(
            parse_dist("lognormal(median=2ms,p99=10ms)", None).unwrap(),
            Dist::LogNormal {
                median: Duration::from_millis(2),
                p99: Duration::from_millis(10)
            }
        );
        assert_eq!(
            parse_dist("uniform(1ms, 3ms)", None).unwrap(),
            Dist::Uniform {
                low: Duration::from_millis(1),
                high: Duration::from_millis(3)
            }
        );
        assert!(parse_dist("lognormal(median=2ms)", None).is_err());
        assert!(parse_dist("gamma(1ms)", None).is_err());
        assert!(parse_dist("exp(mean=2ms", None).is_err());
        assert!(parse_dist("exp(avg=2ms)", None).is_err());
        assert!(parse_dist("lognormal(median=2ms,p99=1ms)", None).is_err());
        // Round trip through Display.
        for s in [
            "const(2ms)",
            "exp(mean=2ms)",
            "normal(mean=5ms,sd=1ms)",
            "pareto(scale=1ms,shape=1.5)",
        ] {
            assert_eq!(parse_dist(s, None).unwrap().to_string(), s);
        }
    }

    #[test]
    fn empirical_reads_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("st.csv"),
            "service_time\n1.5\n2ms\n# note\n\n3ms,extra\n",
        )
        .unwrap();
        let d = parse_dist("empirical(st.csv)", Some(dir.path())).unwrap();
        match d {
            Dist::Empirical { samples, .. } => assert_eq!(
                *samples,
                vec![
                    Duration::from_micros(1500),
                    Duration::from_millis(2),
                    Duration::from_millis(3)
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse_dist("empirical(missing.csv)", Some(dir.path())).is_err());
    }
}
