//! Pod uids from cgroup paths. The kubelet names a pod's cgroup after its uid, with either the
//! cgroupfs driver (`/kubepods/burstable/pod<uid>/<container>`) or the systemd driver
//! (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/…`).

/// The pod uid in the text of a `/proc/PID/cgroup` file, if any line names one.
pub fn pod_uid_from_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(pod_uid_from_path)
}

/// The pod uid in one cgroup path.
fn pod_uid_from_path(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    path.split('/').find_map(|segment| {
        let segment = segment.strip_suffix(".slice").unwrap_or(segment);
        let at = segment.rfind("pod")?;
        let candidate = segment[at + 3..].replace('_', "-");
        is_uuid(&candidate).then_some(candidate)
    })
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "3f1a2b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";

    #[test]
    fn cgroupfs_driver_v2() {
        let text = format!("0::/kubepods/burstable/pod{UID}/0123456789abcdef\n");
        assert_eq!(pod_uid_from_cgroup(&text).as_deref(), Some(UID));
    }

    #[test]
    fn systemd_driver_v2() {
        let u = UID.replace('-', "_");
        let text = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-abc.scope\n"
        );
        assert_eq!(pod_uid_from_cgroup(&text).as_deref(), Some(UID));
    }

    #[test]
    fn guaranteed_qos_and_v1_lines() {
        let u = UID.replace('-', "_");
        let text = format!(
            "12:pids:/kubepods.slice/kubepods-pod{u}.slice/crio-1.scope\n11:cpu:/kubepods/pod{UID}/x\n"
        );
        assert_eq!(pod_uid_from_cgroup(&text).as_deref(), Some(UID));
    }

    #[test]
    fn no_pod_in_path() {
        assert_eq!(
            pod_uid_from_cgroup("0::/user.slice/session-1.scope\n"),
            None
        );
        assert_eq!(
            pod_uid_from_cgroup("0::/kubepods/burstable/podnotauuid/x\n"),
            None
        );
        assert_eq!(pod_uid_from_cgroup(""), None);
        assert_eq!(pod_uid_from_cgroup("garbage without colons"), None);
        // A uid-shaped segment outside the kubepods hierarchy is not a pod.
        assert_eq!(
            pod_uid_from_cgroup(&format!("0::/system.slice/pod{UID}\n")),
            None
        );
    }
}
