//! The `restricted` Pod Security Standard, as far as a manifest shows it.

use k8s_openapi::api::core::v1::Pod;

/// The checks of the `restricted` Pod Security Standard (v1.34) that a manifest alone can
/// show, plus the grader's own hardening (no service account token, a deadline, resources).
pub fn restricted_violations(pod: &Pod) -> Vec<String> {
    let mut v = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return vec!["no spec".into()];
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    for (flag, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            v.push(format!("{name} is set"));
        }
    }
    const ALLOWED_VOLUMES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in spec.volumes.iter().flatten() {
        let json = serde_json::to_value(vol).unwrap();
        for key in json.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !ALLOWED_VOLUMES.contains(&key.as_str()) {
                v.push(format!("volume {} of type {key}", vol.name));
            }
        }
    }
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("{}: privileged", c.name));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{}: allowPrivilegeEscalation is not false", c.name));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            v.push(format!("{}: capabilities do not drop ALL", c.name));
        }
        if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
            v.push(format!("{}: adds capabilities", c.name));
        }
        if sc.run_as_non_root.or(psc.run_as_non_root) != Some(true) {
            v.push(format!("{}: runAsNonRoot is not true", c.name));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("{}: runAsUser 0", c.name));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{}: seccomp profile is not RuntimeDefault", c.name));
        }
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.host_port.is_some_and(|h| h != 0))
        {
            v.push(format!("{}: hostPort", c.name));
        }
        let res = c.resources.clone().unwrap_or_default();
        if res.limits.as_ref().is_none_or(|l| l.is_empty()) {
            v.push(format!("{}: no resource limits", c.name));
        }
    }
    if spec.automount_service_account_token != Some(false) {
        v.push("service account token is mounted".into());
    }
    if spec.active_deadline_seconds.is_none() {
        v.push("no activeDeadlineSeconds".into());
    }
    v
}
