//! Long-lived streams: a container's logs into a file, a run's container events into a
//! callback, and exec with our stdio.
//!
//! Guarantees:
//! - Logs survive restarts: when the log stream of a container ends (its process exited) the
//!   follower waits for the container's next start (engine events) and attaches again,
//!   skipping every line up to the timestamp of the last line it wrote, so each line is written
//!   once. It stops when the container is removed or the [`Engine`] is dropped. Lines are
//!   written as the container wrote them (without the engine's timestamps); stdout and stderr
//!   go to the same file in the engine's order.
//! - Events are subscribed with `since` set to the call's time, so no event after
//!   [`Engine::watch_events`] returns is missed even though the subscription is established in
//!   the background; if the engine ends the stream, the watch subscribes again from the last
//!   event it delivered (without delivering it twice). `on_event` runs on the engine's runtime:
//!   it should return quickly (send on a channel), and must not call [`Engine`] methods, which
//!   would block a runtime thread on the runtime itself (tokio panics).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::models::{EventMessage, ExecConfig};
use bollard::query_parameters::{EventsOptions, LogsOptions};
use futures_util::StreamExt;
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

use super::{status, ContainerEvent, Engine, EngineError, RUN_LABEL};

/// Container events a watch delivers.
pub const WATCHED_ACTIONS: [&str; 4] = ["start", "die", "oom", "kill"];

/// How long a watch or a log follower waits before subscribing again after the engine ended a
/// stream with an error.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// A running event watch; dropping it stops the background task.
pub struct EventWatch {
    task: tokio::task::AbortHandle,
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The events `filters` of a run's watched container events.
pub fn event_filter(run: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![format!("{RUN_LABEL}={run}")]),
        (
            "event".to_string(),
            WATCHED_ACTIONS.iter().map(|a| a.to_string()).collect(),
        ),
    ])
}

/// An engine event as a [`ContainerEvent`]; `None` for events of other kinds or actions.
pub fn container_event(m: &EventMessage) -> Option<ContainerEvent> {
    let action = m.action.as_deref()?;
    if !WATCHED_ACTIONS.contains(&action) {
        return None;
    }
    let attrs = m.actor.as_ref().and_then(|a| a.attributes.as_ref());
    let name = attrs.and_then(|a| a.get("name")).cloned()?;
    let exit_code = attrs
        .and_then(|a| a.get("exitCode"))
        .and_then(|c| c.parse::<i64>().ok());
    let time_nano = m
        .time_nano
        .or_else(|| m.time.map(|t| t * 1_000_000_000))
        .unwrap_or(0);
    Some(ContainerEvent {
        name,
        action: action.to_string(),
        exit_code,
        time_nano,
    })
}

/// The `since` of an events request for a time in ns since the epoch: "secs.nnnnnnnnn".
pub fn since_arg(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}

fn now_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Splits a log line the engine sent with `timestamps=true` into (ns since the epoch, the
/// line). `None` when it does not start with an RFC 3339 UTC timestamp and a space.
pub fn split_timestamp(frame: &[u8]) -> Option<(i64, &[u8])> {
    let space = frame.iter().position(|&b| b == b' ')?;
    let ts = std::str::from_utf8(&frame[..space]).ok()?;
    Some((parse_rfc3339_utc(ts)?, &frame[space + 1..]))
}

/// "2026-12-02T00:38:38.123456789Z" → ns since the epoch (any number of fraction digits, up
/// to 9; UTC `Z` only, which is what the engine writes).
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60 + se).map(|secs| secs * 1_000_000_000 + nanos)
}

impl Engine {
    /// Appends the container's stdout and stderr (follow) to `path` from a background task,
    /// until the container is removed or the Engine is dropped; attaches again after each
    /// start of the container (see the module docs).
    pub fn follow_logs(&self, name: &str, path: &Path) -> Result<(), EngineError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| EngineError::io(path, e))?;
        // Fail now, not in the background, for a container that does not exist.
        let first_start = self.started_at(name)?;
        let docker = self.docker().clone();
        let name = name.to_string();
        self.rt().spawn(async move {
            let mut last: Option<i64> = None;
            let mut started = first_start;
            loop {
                let options = LogsOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    timestamps: true,
                    since: last
                        .map(|t| i32::try_from(t.div_euclid(1_000_000_000)).unwrap_or(0))
                        .unwrap_or(0),
                    ..Default::default()
                };
                let mut logs = docker.logs(&name, Some(options));
                while let Some(Ok(frame)) = logs.next().await {
                    let frame = frame.into_bytes();
                    let (ts, line) = match split_timestamp(&frame) {
                        Some((ts, line)) => (Some(ts), line),
                        None => (None, &frame[..]),
                    };
                    if let (Some(ts), Some(l)) = (ts, last) {
                        if ts <= l {
                            continue;
                        }
                    }
                    if file.write_all(line).is_err() {
                        return;
                    }
                    last = ts.or(last);
                }
                drop(logs);
                // Stopped (or the stream broke): attach again once it runs again.
                loop {
                    let mark = now_nano();
                    match next_start(&docker, &name, &started).await {
                        Next::Removed => return,
                        Next::Started(s) => {
                            started = s;
                            break;
                        }
                        Next::Wait => {}
                    }
                    let options = EventsOptions {
                        since: Some(since_arg(mark)),
                        until: None,
                        filters: Some(HashMap::from([
                            ("type".to_string(), vec!["container".to_string()]),
                            ("container".to_string(), vec![name.clone()]),
                            (
                                "event".to_string(),
                                vec!["start".to_string(), "destroy".to_string()],
                            ),
                        ])),
                    };
                    // Any start or destroy after `mark` wakes us; next_start then decides.
                    let mut events = docker.events(Some(options));
                    if let Some(Err(_)) | None = events.next().await {
                        tokio::time::sleep(RESUBSCRIBE).await;
                    }
                }
            }
        });
        Ok(())
    }

    fn started_at(&self, name: &str) -> Result<String, EngineError> {
        let info = self
            .block_on(self.docker().inspect_container(name, None))
            .map_err(|e| EngineError::api(format!("container {name}"), "inspect", e))?;
        Ok(info.state.and_then(|s| s.started_at).unwrap_or_default())
    }

    /// Calls `on_event` from a background task for every container event (start, die, oom,
    /// kill) of containers labelled `sdnbed.run=<run>`, from the time of this call until the
    /// returned watch is dropped.
    pub fn watch_events(
        &self,
        run: &str,
        on_event: Box<dyn Fn(ContainerEvent) + Send + Sync>,
    ) -> Result<EventWatch, EngineError> {
        // Check the engine answers, so a broken connection is an error here, not a silent watch.
        self.block_on(self.docker().ping())
            .map_err(|e| EngineError::api(format!("events of run {run}"), "ping", e))?;
        let docker = self.docker().clone();
        let filters = event_filter(run);
        let mut since = now_nano();
        let task = self.rt().spawn(async move {
            // Events already delivered at time `since`, so a resubscription skips them.
            let mut delivered: Vec<ContainerEvent> = Vec::new();
            loop {
                let options = EventsOptions {
                    since: Some(since_arg(since)),
                    until: None,
                    filters: Some(filters.clone()),
                };
                let mut s = docker.events(Some(options));
                while let Some(Ok(m)) = s.next().await {
                    let Some(ev) = container_event(&m) else {
                        continue;
                    };
                    if ev.time_nano < since || delivered.contains(&ev) {
                        continue;
                    }
                    if ev.time_nano > since {
                        since = ev.time_nano;
                        delivered.clear();
                    }
                    delivered.push(ev.clone());
                    on_event(ev);
                }
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        });
        Ok(EventWatch {
            task: task.abort_handle(),
        })
    }

    /// Runs `cmd` in the running container (the API's exec), its stdout and stderr copied to
    /// ours, stdin from ours when `stdin` is true; returns the exit code.
    ///
    /// With `stdin`, a thread reads our stdin until end of file; when the command ends first,
    /// that thread stays blocked in its read until the next input (harmless in a CLI that
    /// exits next).
    pub fn exec(&self, name: &str, cmd: &[String], stdin: bool) -> Result<i64, EngineError> {
        let object = || format!("container {name}");
        let config = ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        self.block_on(async {
            let d = self.docker();
            let id = d
                .create_exec(name, config)
                .await
                .map_err(|e| EngineError::api(object(), "exec create", e))?
                .id;
            let started = d
                .start_exec(&id, None)
                .await
                .map_err(|e| EngineError::api(object(), "exec start", e))?;
            let bollard::exec::StartExecResults::Attached {
                mut output,
                mut input,
            } = started
            else {
                unreachable!("start_exec without detach attaches");
            };
            let writer = if stdin {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 8192];
                    let mut ours = std::io::stdin().lock();
                    loop {
                        match std::io::Read::read(&mut ours, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                Some(tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if input.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = input.shutdown().await;
                }))
            } else {
                drop(input);
                None
            };
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdErr { message }) => {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(&message);
                        let _ = e.flush();
                    }
                    Ok(other) => {
                        let mut o = std::io::stdout().lock();
                        let _ = o.write_all(other.as_ref());
                        let _ = o.flush();
                    }
                    Err(e) => return Err(EngineError::api(object(), "exec output", e)),
                }
            }
            if let Some(w) = writer {
                w.abort();
            }
            // The output ends when the process closes it; its exit code follows shortly.
            loop {
                let info = d
                    .inspect_exec(&id)
                    .await
                    .map_err(|e| EngineError::api(object(), "exec inspect", e))?;
                if info.running != Some(true) {
                    return Ok(info.exit_code.unwrap_or(-1));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}

/// What the log follower does next after a log stream ended.
enum Next {
    Removed,
    /// The container runs again, or ran since (a new start time): attach with this start time.
    Started(String),
    Wait,
}

async fn next_start(docker: &bollard::Docker, name: &str, previous: &str) -> Next {
    match docker.inspect_container(name, None).await {
        Err(e) if status(&e) == Some(404) => Next::Removed,
        Err(_) => {
            tokio::time::sleep(RESUBSCRIBE).await;
            Next::Wait
        }
        Ok(info) => {
            let s = info.state.unwrap_or_default();
            let started = s.started_at.unwrap_or_default();
            if s.running == Some(true) || started != previous {
                Next::Started(started)
            } else {
                Next::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    #[test]
    fn timestamps_parse_to_unix_nanoseconds() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        // date -u -d 2026-12-02T00:38:38Z +%s = 1796171918
        assert_eq!(
            parse_rfc3339_utc("2026-12-02T00:38:38.000000123Z"),
            Some(1_796_171_918_000_000_123)
        );
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T12:00:00Z"),
            Some(1_709_208_000 * 1_000_000_000)
        );
        assert_eq!(parse_rfc3339_utc("2024-02-29T12:00:00+01:00"), None);
        assert_eq!(parse_rfc3339_utc("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_utc("2024-01-01T00:00:00.1234567890Z"), None);
        assert_eq!(parse_rfc3339_utc("hello"), None);
    }

    #[test]
    fn log_frames_split_into_time_and_line() {
        let (t, line) =
            split_timestamp(b"1970-01-01T00:00:02.000000001Z listening on 0.0.0.0:8080\n").unwrap();
        assert_eq!(t, 2_000_000_001);
        assert_eq!(line, b"listening on 0.0.0.0:8080\n");
        assert_eq!(split_timestamp(b"no timestamp here\n"), None);
    }

    #[test]
    fn since_has_nanosecond_digits() {
        assert_eq!(since_arg(1_796_171_918_000_000_123), "1796171918.000000123");
        assert_eq!(since_arg(5), "0.000000005");
    }

    #[test]
    fn event_filter_selects_the_run_and_the_watched_actions() {
        let f = event_filter("3f2a");
        assert_eq!(f["type"], ["container"]);
        assert_eq!(f["label"], ["sdnbed.run=3f2a"]);
        assert_eq!(f["event"], ["start", "die", "oom", "kill"]);
    }

    fn message(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            time: Some(12),
            time_nano: Some(12_000_000_345),
            ..Default::default()
        }
    }

    #[test]
    fn die_events_carry_name_and_exit_code() {
        let m = message("die", &[("name", "sdnbed-r1-web-1"), ("exitCode", "137")]);
        assert_eq!(
            container_event(&m),
            Some(ContainerEvent {
                name: "sdnbed-r1-web-1".into(),
                action: "die".into(),
                exit_code: Some(137),
                time_nano: 12_000_000_345,
            })
        );
        let start = container_event(&message("start", &[("name", "x")])).unwrap();
        assert_eq!(start.exit_code, None);
        assert_eq!(container_event(&message("attach", &[("name", "x")])), None);
        assert_eq!(
            container_event(&message("die", &[])),
            None,
            "no name, no event"
        );
        let mut old = message("kill", &[("name", "x")]);
        old.time_nano = None;
        assert_eq!(container_event(&old).unwrap().time_nano, 12_000_000_000);
    }
}
