//! Interface names on the command line: `-i any` stands for every interface
//! that is up in tcptrace's network namespace when it starts (and, while it
//! runs, those that come up later: see `live.rs`).

use std::{collections::BTreeMap, ffi::CStr};

use crate::{UsageError, loader::nix_ifindex};

/// The interfaces that are up in this network namespace, by index.
pub fn up_interfaces() -> std::io::Result<Vec<String>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut up = BTreeMap::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if ifa.ifa_flags & libc::IFF_UP as u32 != 0 && !ifa.ifa_name.is_null() {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
            let index = nix_ifindex(&name);
            if index != 0 {
                up.insert(index, name);
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(up.into_values().collect())
}

/// The interfaces to trace for the `-i` values given: each must exist;
/// `any` adds every interface that is up. Repeats are dropped.
pub fn expand(requested: &[String]) -> anyhow::Result<Vec<String>> {
    let (out, missing) = expand_or_wait(requested, false)?;
    debug_assert!(missing.is_empty());
    Ok(out)
}

/// Like [`expand`]; with `wait` (`--wait`) a name that does not exist yet is
/// returned in the second list instead of being an error.
pub fn expand_or_wait(requested: &[String], wait: bool) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut out: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for name in requested {
        let names = if name == "any" {
            let up = up_interfaces()?;
            if up.is_empty() {
                anyhow::bail!(UsageError("-i any: no interface is up".into()));
            }
            up
        } else if nix_ifindex(name) == 0 {
            if !wait {
                anyhow::bail!(UsageError(format!("{name}: no such interface")));
            }
            if !missing.contains(name) {
                missing.push(name.clone());
            }
            continue;
        } else {
            vec![name.clone()]
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_includes_the_loopback_interface_when_up() {
        let up = up_interfaces().unwrap();
        // lo is up in any namespace this runs in (the build's).
        if nix_ifindex("lo") != 0 && up.iter().any(|n| n == "lo") {
            let all = expand(&["lo".into(), "any".into()]).unwrap();
            assert_eq!(all.iter().filter(|n| *n == "lo").count(), 1, "{all:?}");
            assert_eq!(all.len(), up.len(), "{all:?} vs {up:?}");
        }
        assert!(expand(&["no-such-if0".into()]).is_err());
    }
}
