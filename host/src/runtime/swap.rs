//! Whether the kernel can swap this process's memory out, which decides
//! how a reused sandbox slot is reset. wasmtime 48's `PAGEMAP_SCAN` reset
//! restores the pages a request dirtied that are present: a dirty page
//! the kernel swapped out is neither restored nor discarded, so the next
//! request in that slot could read it (wasmtime PR #14357). Where swap
//! can reach the process, slots are reset without it: the kept-resident
//! part memset, the rest discarded, which is right with swap too.

use std::path::{Path, PathBuf};

/// What the check found, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// No page of this process can be swapped out.
    Off(String),
    /// Some can, or the check could not tell.
    On(String),
}

impl Swap {
    /// The machine's answer: `/proc/swaps`, then this process's cgroup's
    /// `memory.swap.max` (cgroup v2) and its parents'.
    pub fn of_this_process() -> Swap {
        let read = |path: &Path| std::fs::read_to_string(path).ok();
        decide(
            read(Path::new("/proc/swaps")).as_deref(),
            read(Path::new("/proc/self/cgroup")).as_deref(),
            Path::new("/sys/fs/cgroup"),
            read,
        )
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Swap::On(_))
    }

    pub fn why(&self) -> &str {
        match self {
            Swap::Off(why) | Swap::On(why) => why,
        }
    }
}

/// [`Swap::of_this_process`] from what the files say: `swaps` is
/// `/proc/swaps`, `cgroup` `/proc/self/cgroup`, `root` where cgroup v2
/// is mounted, and `read` reads a file under it.
fn decide(
    swaps: Option<&str>,
    cgroup: Option<&str>,
    root: &Path,
    read: impl Fn(&Path) -> Option<String>,
) -> Swap {
    let Some(swaps) = swaps else {
        return Swap::On("/proc/swaps cannot be read, so swap is assumed on".into());
    };
    // The first line is the table's header.
    let devices: Vec<&str> = swaps
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    if devices.is_empty() {
        return Swap::Off("no swap device is on".into());
    }
    // cgroup v2: "0::/path"; its `memory.swap.max`, or a parent's, of 0
    // keeps every page of the process in memory.
    let group = cgroup
        .into_iter()
        .flat_map(str::lines)
        .find_map(|line| line.strip_prefix("0::"));
    if let Some(group) = group {
        let mut dir: PathBuf = root.join(group.trim_start_matches('/'));
        loop {
            let max = dir.join("memory.swap.max");
            if read(&max).is_some_and(|value| value.trim() == "0") {
                return Swap::Off(format!(
                    "swap is on ({}) but {} is 0",
                    devices.join(", "),
                    max.display()
                ));
            }
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    Swap::On(format!(
        "swap is on ({}) and this process's cgroup may use it",
        devices.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SWAPS: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                         /swapfile                               file\t\t4194300\t\t0\t\t-2\n";
    const HEADER_ONLY: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |path: &Path| files.get(path).cloned()
    }

    fn of(swaps: Option<&str>, cgroup: Option<&str>, entries: &[(&str, &str)]) -> Swap {
        decide(swaps, cgroup, Path::new("/sys/fs/cgroup"), files(entries))
    }

    #[test]
    fn no_device_means_off() {
        assert!(!of(Some(HEADER_ONLY), Some("0::/a"), &[]).is_on());
        assert!(!of(Some(""), None, &[]).is_on());
    }

    #[test]
    fn a_device_means_on_unless_a_cgroup_allows_none() {
        let cgroup = Some("0::/system.slice/rawalite.service\n");
        let on = of(Some(SWAPS), cgroup, &[]);
        assert!(on.is_on() && on.why().contains("/swapfile"), "{on:?}");
        let own = "/sys/fs/cgroup/system.slice/rawalite.service/memory.swap.max";
        assert!(!of(Some(SWAPS), cgroup, &[(own, "0\n")]).is_on());
        assert!(of(Some(SWAPS), cgroup, &[(own, "max\n")]).is_on());
        // A parent's limit holds for its children.
        let parent = "/sys/fs/cgroup/system.slice/memory.swap.max";
        let off = of(Some(SWAPS), cgroup, &[(own, "max\n"), (parent, "0\n")]);
        assert!(
            !off.is_on() && off.why().contains("system.slice"),
            "{off:?}"
        );
        // cgroup v1 has no such file: on.
        assert!(of(Some(SWAPS), Some("4:memory:/user.slice\n"), &[]).is_on());
    }

    #[test]
    fn what_cannot_be_read_counts_as_on() {
        assert!(of(None, Some("0::/"), &[]).is_on());
    }
}
