//! The process metrics under Prometheus' standard names, read from `/proc/self` at scrape
//! time (Linux; elsewhere they are left out). A few lines by hand rather than a crate: the
//! `prometheus` and `procfs` crates would bring a registry or a whole procfs model (and
//! `unsafe` system calls) for six numbers, and this workspace forbids `unsafe` itself, so
//! times are read in the kernel's fixed `USER_HZ` (100 ticks per second on every Linux
//! architecture Latchkey builds for) and sizes from `/proc/self/status` in kB.

use super::metric;

/// Ticks per second of `/proc/*/stat`'s times (`USER_HZ`, fixed by the kernel's ABI).
const USER_HZ: f64 = 100.0;

/// What was read; a value that could not be read is `None` and its metric is left out.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl Process {
    pub fn read() -> Process {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut p = Process::parse(
            read("/proc/self/stat").as_deref(),
            read("/proc/self/status").as_deref(),
            read("/proc/self/limits").as_deref(),
            read("/proc/stat").as_deref(),
        );
        // The directory's own descriptor, open while it is read, is counted as well (as
        // Prometheus' own clients do).
        p.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        p
    }

    /// The numbers in `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits` and `/proc/stat`.
    pub fn parse(stat: Option<&str>, status: Option<&str>, limits: Option<&str>, system: Option<&str>) -> Process {
        // The fields after the command name, which is in parentheses and may hold spaces:
        // the third field (`state`) is the first here.
        let fields: Vec<&str> = stat
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let cpu_seconds = field(14).zip(field(15)).map(|(user, system)| (user + system) as f64 / USER_HZ);
        let boot = system.and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
        let start_time_seconds = field(22).zip(boot).map(|(ticks, boot)| boot as f64 + ticks as f64 / USER_HZ);
        let kb = |name: &str| {
            status?.lines().find_map(|l| {
                let value = l.strip_prefix(name)?.strip_prefix(':')?.trim().strip_suffix("kB")?;
                value.trim().parse::<u64>().ok().map(|kb| kb * 1024)
            })
        };
        let max_fds = limits.and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
        });
        Process {
            cpu_seconds,
            start_time_seconds,
            resident_bytes: kb("VmRSS"),
            virtual_bytes: kb("VmSize"),
            open_fds: None,
            max_fds,
        }
    }

    pub fn render(&self, out: &mut String) {
        let families: [(&str, &str, &str, Option<String>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
                self.cpu_seconds.map(|v| v.to_string()),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                self.start_time_seconds.map(|v| v.to_string()),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, in bytes.",
                self.resident_bytes.map(|v| v.to_string()),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size, in bytes.",
                self.virtual_bytes.map(|v| v.to_string()),
            ),
            ("process_open_fds", "gauge", "Open file descriptors.", self.open_fds.map(|v| v.to_string())),
            ("process_max_fds", "gauge", "The limit on open file descriptors.", self.max_fds.map(|v| v.to_string())),
        ];
        for (name, kind, help, value) in families {
            if let Some(value) = value {
                metric(out, name, kind, help, &[("", &value)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Process;

    #[test]
    fn process_numbers_are_read_from_procfs_text() {
        // A command name with a space and a parenthesis, as `comm` may have.
        let stat = "4242 (latch key) S 1 4242 4242 0 -1 4194560 2105 0 0 0 123 45 0 0 20 0 9 0 \
                    5000 1234567168 3977 18446744073709551615 1 1 0 0 0 0 0 4096 17000 0 0 0 17 1 0 0 0 0 0";
        let status = "Name:\tlatchkey\nVmSize:\t 1205632 kB\nVmRSS:\t   15908 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        let system = "cpu  1 2 3\nbtime 1764979200\nprocesses 9\n";
        let p = Process::parse(Some(stat), Some(status), Some(limits), Some(system));
        assert_eq!(
            p,
            Process {
                cpu_seconds: Some(1.68),
                start_time_seconds: Some(1_764_979_250.0),
                resident_bytes: Some(15_908 * 1024),
                virtual_bytes: Some(1_205_632 * 1024),
                open_fds: None,
                max_fds: Some(1024),
            }
        );
        let mut out = String::new();
        p.render(&mut out);
        assert!(out.contains("\nprocess_resident_memory_bytes 16289792\n"), "{out}");
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.68\n"), "{out}");
        assert!(!out.contains("process_open_fds"), "an unread value is left out: {out}");
        assert_eq!(Process::parse(None, None, None, None), Process::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let p = Process::read();
        assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(p.cpu_seconds.is_some() && p.start_time_seconds.is_some() && p.max_fds.is_some(), "{p:?}");
    }
}
