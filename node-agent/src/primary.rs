//! The one place that decides which file is the primary CNI config under `primary.auto`:
//! the first `.conf`/`.conflist`/`.json` in lexical order that the agent does not own, is
//! not a Multus config (`00-multus*`), not hidden or one of its temp files, and matches no
//! exclude pattern. A backup such as `00-multus.conf.cilium_bak` fails the first rule.

use std::path::Path;

use crate::fsops::is_temp_name;
use crate::owned_files::OwnedFiles;

/// Why a file is never taken as the primary.
pub fn skip_reason(
    dir: &str,
    name: &str,
    owned: &OwnedFiles,
    exclude: &[String],
) -> Option<&'static str> {
    let is_config = [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    if !is_config {
        return Some("not a CNI config name");
    }
    if owned.owns(&format!("{}/{name}", dir.trim_end_matches('/'))) {
        return Some("owned by the agent");
    }
    if name.starts_with("00-multus") {
        return Some("a Multus config");
    }
    if is_temp_name(name) || name.starts_with('.') {
        return Some("a temporary or hidden file");
    }
    if exclude.iter().any(|pattern| glob_match(pattern, name)) {
        return Some("excluded by primary.auto.exclude");
    }
    None
}

/// Lists `dir` (resolved) and returns the chosen file name, if any.
pub fn choose_auto(
    resolved_dir: &Path,
    host_dir: &str,
    owned: &OwnedFiles,
    exclude: &[String],
) -> std::io::Result<Option<String>> {
    let mut names: Vec<String> = match std::fs::read_dir(resolved_dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names
        .into_iter()
        .find(|name| skip_reason(host_dir, name, owned, exclude).is_none()))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*istio*", "05-istio-cni.conflist"));
        assert!(glob_match("10-*.conf", "10-flannel.conf"));
        assert!(!glob_match("10-*.conf", "10-flannel.conflist"));
        assert!(glob_match("exact.conf", "exact.conf"));
        assert!(!glob_match("a*b*c", "acb"));
    }

    #[test]
    fn auto_skips_owned_multus_temp_hidden_and_excluded_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00-multus.conf",
            "00-multus.conf.cilium_bak",
            ".multus-agent-00-multus.conf.tmp",
            "01-owned.conf",
            "05-istio-cni.conflist",
            "10-calico.conflist",
            "99-loopback.conf",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let mut owned = OwnedFiles::default();
        owned.files.insert("/etc/cni/net.d/01-owned.conf".into());
        let chosen =
            choose_auto(dir.path(), "/etc/cni/net.d", &owned, &["*istio*".into()]).unwrap();
        assert_eq!(chosen.as_deref(), Some("10-calico.conflist"));
    }

    #[test]
    fn a_directory_holding_only_our_files_has_no_primary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00-multus.conf"), "{}").unwrap();
        let chosen =
            choose_auto(dir.path(), "/etc/cni/net.d", &OwnedFiles::default(), &[]).unwrap();
        assert_eq!(chosen, None);
    }
}
