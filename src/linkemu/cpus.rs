//! Where the emulator's packet thread, the replicas and the load generator run.
//!
//! The packet thread busy-polls before each delivery, at real-time priority, so on a shared
//! CPU it and the processes whose packets it carries would take turns, and each turn adds to
//! some packet's delay or to the process's own latency. [`Placement`] gives it one CPU of its own, the last one the
//! process may use, and everything else the rest: the emulator pins its packet thread with
//! [`Placement::pin_emulator_thread`] when it starts; a runner pins each replica and load
//! generator it spawns with [`Placement::pin_workload`] (`sched_setaffinity`, as `taskset -p`;
//! threads the process starts later inherit it). With a single CPU there is nothing to split
//! and nothing is pinned.
//!
//! The split is static: on 2 CPUs the workload gets one, which is the cost of an emulator
//! that never waits for a CPU (see `bench/linkemu.md`).

use std::io;

/// The CPUs of the packet thread and of everything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The packet thread's CPU (None: one CPU only, shared).
    pub emulator: Option<usize>,
    /// Where replicas and load generators run.
    pub workload: Vec<usize>,
}

impl Placement {
    /// The split of `allowed` CPUs: the last for the emulator, the others for the workload;
    /// a single CPU is shared.
    pub fn for_cpus(allowed: &[usize]) -> Placement {
        match allowed.split_last() {
            Some((last, rest)) if !rest.is_empty() => Placement {
                emulator: Some(*last),
                workload: rest.to_vec(),
            },
            _ => Placement {
                emulator: None,
                workload: allowed.to_vec(),
            },
        }
    }

    /// The split of the CPUs this process may use (`sched_getaffinity`).
    pub fn of_this_process() -> io::Result<Placement> {
        // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity fills it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the size is the set's.
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: reads a bit of a set we own, below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        Ok(Placement::for_cpus(&allowed))
    }

    /// Pins the calling thread to the emulator's CPU (nothing with one CPU).
    pub fn pin_emulator_thread(&self) -> io::Result<()> {
        match self.emulator {
            Some(c) => set_affinity(0, &[c]),
            None => Ok(()),
        }
    }

    /// Pins process (or thread) `pid` to the workload's CPUs, keeping it off the emulator's;
    /// call it on a replica or load generator right after spawning it.
    pub fn pin_workload(&self, pid: i32) -> io::Result<()> {
        if self.emulator.is_none() {
            return Ok(());
        }
        set_affinity(pid, &self.workload)
    }
}

/// `sched_setaffinity(pid, cpus)`; pid 0 is the calling thread.
fn set_affinity(pid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: sets a bit of a set we own; CPU_SET ignores indices past CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: a valid set of its own size.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_cpu_goes_to_the_emulator() {
        assert_eq!(
            Placement::for_cpus(&[0, 1]),
            Placement {
                emulator: Some(1),
                workload: vec![0]
            }
        );
        assert_eq!(
            Placement::for_cpus(&[2, 5, 7]),
            Placement {
                emulator: Some(7),
                workload: vec![2, 5]
            }
        );
        assert_eq!(
            Placement::for_cpus(&[3]),
            Placement {
                emulator: None,
                workload: vec![3]
            }
        );
    }

    #[test]
    fn pins_a_process_off_the_emulators_cpu() {
        let p = Placement::of_this_process().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        p.pin_workload(pid).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let line = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        // With one CPU nothing is pinned, and the child runs where it may: that CPU.
        let want: Vec<String> = p.workload.iter().map(usize::to_string).collect();
        let got: Vec<String> = expand(line.split_once(':').unwrap().1.trim());
        assert_eq!(got, want, "{line}");
    }

    /// `0-2,5` as `["0", "1", "2", "5"]`.
    fn expand(list: &str) -> Vec<String> {
        list.split(',')
            .flat_map(|r| match r.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().unwrap()..=b.parse().unwrap()).collect(),
                None => vec![r.parse::<usize>().unwrap()],
            })
            .map(|c| c.to_string())
            .collect()
    }
}
