//! The pure plan, on the operator's golden thin-auto bundle.

use std::collections::BTreeMap;

use multus_crds::bundle::{AgentState, DAEMON_CONFIG_NAME, NodeBundle};
use multus_node_agent::owned_files::OwnedFiles;
use multus_node_agent::plan::{
    NodeView, Plan, PrimaryView, Step, Upstream, plan_apply, plan_removal,
};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../operator/testdata/golden/thin-auto"
);
const KUBECONFIG: &str = "/etc/cni/net.d/multus.d/multus.kubeconfig";

fn bundle() -> NodeBundle {
    golden_bundle(GOLDEN)
}

fn golden_bundle(dir: &str) -> NodeBundle {
    let mut data = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("completed-") {
            continue;
        }
        data.insert(name, std::fs::read_to_string(entry.path()).unwrap());
    }
    NodeBundle::from_configmap_data(&data).unwrap()
}

fn calico() -> PrimaryView {
    PrimaryView::Found {
        name: "10-calico.conflist".into(),
        text: std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../operator/testdata/10-calico.conflist"
        ))
        .unwrap(),
    }
}

fn view(primary: PrimaryView) -> NodeView {
    NodeView {
        primary,
        readiness_ok: true,
        kubeconfig: Some("apiVersion: v1\nkind: Config\n".into()),
        existing: vec![],
        upstream: vec![],
    }
}

/// The golden bundle planned onto `node` by an agent that owns no file yet.
fn plan_fresh(node: &NodeView, upstream: Upstream) -> Plan {
    plan_apply(&bundle(), node, &OwnedFiles::default(), upstream)
}

/// Plans `node` like [`plan_fresh`] without a take-over, checks that nothing would be
/// touched, and returns the state and message reported instead.
fn nothing_planned(node: &NodeView) -> (AgentState, String) {
    let plan = plan_fresh(node, Upstream::Refuse);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    (plan.state, plan.message.unwrap_or_default())
}

fn paths(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Write { path, .. } => format!("write {path}"),
            Step::Remove { path } => format!("remove {path}"),
            Step::Backup { path } => format!("backup {path}"),
        })
        .collect()
}

#[test]
fn a_full_apply_writes_kubeconfig_then_attachments_then_the_multus_config() {
    let plan = plan_fresh(&view(calico()), Upstream::Refuse);
    assert_eq!(plan.state, AgentState::Applied);
    assert_eq!(plan.primary.as_deref(), Some("10-calico.conflist"));
    assert_eq!(
        paths(&plan.steps),
        vec![
            format!("write {KUBECONFIG}"),
            "write /etc/cni/multus/net.d/team-a-backplane.conflist".to_string(),
            "write /etc/cni/multus/net.d/team-a-storage.conf".to_string(),
            "write /etc/cni/net.d/00-multus.conf".to_string(),
        ]
    );
    let Step::Write { bytes, mode, .. } = &plan.steps[3] else {
        panic!()
    };
    assert_eq!(*mode, 0o600);
    let expected = std::fs::read(format!("{GOLDEN}/completed-with-10-calico")).unwrap();
    assert_eq!(bytes, &expected, "the completed config is byte-exact");
}

#[test]
fn nothing_is_written_while_the_primary_or_readiness_file_is_missing() {
    let (state, message) = nothing_planned(&view(PrimaryView::Missing));
    assert_eq!(state, AgentState::WaitingForPrimary);
    assert!(message.contains("waiting for a primary CNI config in /etc/cni/net.d"));

    let mut not_ready = view(calico());
    not_ready.readiness_ok = false;
    assert_eq!(nothing_planned(&not_ready).0, AgentState::WaitingForPrimary);
}

#[test]
fn without_a_verified_token_nothing_is_written() {
    let mut no_token = view(calico());
    no_token.kubeconfig = None;
    assert_eq!(nothing_planned(&no_token).0, AgentState::Failed);
}

#[test]
fn a_file_the_agent_does_not_own_is_never_overwritten() {
    let mut foreign = view(calico());
    foreign.existing = vec!["/etc/cni/net.d/00-multus.conf".into()];
    let (state, message) = nothing_planned(&foreign);
    assert_eq!(state, AgentState::Failed);
    assert!(message.contains("refusing to overwrite /etc/cni/net.d/00-multus.conf"));
}

#[test]
fn owned_files_the_bundle_dropped_are_removed_after_the_writes() {
    let mut owned = OwnedFiles::default();
    owned
        .files
        .insert("/etc/cni/multus/net.d/team-a-old.conf".into());
    let plan = plan_apply(&bundle(), &view(calico()), &owned, Upstream::Refuse);
    assert_eq!(
        paths(&plan.steps).last().map(String::as_str),
        Some("remove /etc/cni/multus/net.d/team-a-old.conf")
    );
}

#[test]
fn removal_goes_multus_config_first_attachments_next_kubeconfig_last() {
    let first = plan_fresh(&view(calico()), Upstream::Refuse);
    let mut owned = OwnedFiles::default();
    for step in &first.steps {
        if let Step::Write { path, .. } = step {
            owned.files.insert(path.clone());
        }
    }
    let plan = plan_removal(Some(&bundle()), &owned);
    assert_eq!(plan.state, AgentState::Removed);
    assert_eq!(
        paths(&plan.steps),
        vec![
            "remove /etc/cni/net.d/00-multus.conf".to_string(),
            "remove /etc/cni/multus/net.d/team-a-backplane.conflist".to_string(),
            "remove /etc/cni/multus/net.d/team-a-storage.conf".to_string(),
            format!("remove {KUBECONFIG}"),
        ]
    );
}

#[test]
fn debug_output_of_a_plan_and_its_view_never_shows_the_kubeconfig_token() {
    let secret = "eyJhbGciOiJSUzI1NiJ9.not-a-real-token";
    let mut node = view(calico());
    node.kubeconfig = Some(format!(
        "apiVersion: v1\nkind: Config\nusers:\n- name: multus\n  user:\n    token: {secret}\n"
    ));
    let plan = plan_fresh(&node, Upstream::Refuse);
    let Step::Write { bytes, .. } = &plan.steps[0] else {
        panic!("the kubeconfig is written first")
    };
    assert!(String::from_utf8_lossy(bytes).contains(secret));
    for shown in [
        format!("{plan:?}"),
        format!("{plan:#?}"),
        format!("{node:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("bytes>"), "{shown}");
    }
}

#[test]
fn a_daemon_config_that_is_not_a_json_object_is_refused_and_nothing_is_written() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../operator/testdata/golden/thick-nad"
    );
    let good = golden_bundle(dir);
    let node = view(PrimaryView::NotNeeded);
    assert_eq!(
        plan_apply(&good, &node, &OwnedFiles::default(), Upstream::Refuse).state,
        AgentState::Applied
    );
    let mut broken = good.clone();
    let replaced = broken
        .data
        .insert(DAEMON_CONFIG_NAME.into(), "[\"not\", \"an object\"]".into());
    assert!(replaced.is_some(), "the thick bundle has a daemon config");
    let plan = plan_apply(&broken, &node, &OwnedFiles::default(), Upstream::Refuse);
    assert_eq!(plan.state, AgentState::Failed);
    assert!(plan.steps.is_empty());
    assert!(
        plan.message
            .unwrap_or_default()
            .contains("not a JSON object"),
        "names the problem"
    );
}

/// A node where upstream's thin DaemonSet ran: its Multus config and kubeconfig are there.
fn after_upstream(multus_config: &str) -> NodeView {
    let mut node = view(calico());
    let ours = "/etc/cni/net.d/00-multus.conf".to_string();
    node.upstream = vec![multus_config.to_string(), KUBECONFIG.to_string()];
    node.existing = [ours, KUBECONFIG.to_string()]
        .into_iter()
        .filter(|p| node.upstream.contains(p))
        .collect();
    node
}

/// The step paths of taking over from upstream, which left `multus_config`; the take-over
/// must apply.
fn take_over_steps(multus_config: &str) -> Vec<String> {
    let plan = plan_fresh(&after_upstream(multus_config), Upstream::TakeOver);
    assert_eq!(plan.state, AgentState::Applied, "{:?}", plan.message);
    paths(&plan.steps)
}

#[test]
fn upstreams_files_are_left_alone_without_the_take_over_value_which_the_message_names() {
    for left in [
        "/etc/cni/net.d/00-multus.conf",
        "/etc/cni/net.d/00-multus.conflist",
    ] {
        let plan = plan_fresh(&after_upstream(left), Upstream::Refuse);
        assert_eq!(plan.state, AgentState::Failed, "{left}");
        assert!(plan.steps.is_empty(), "{left}: nothing is touched");
        let message = plan.message.unwrap();
        assert!(
            message.contains("agent.takeOverUpstream=true")
                && message.contains("--take-over-upstream"),
            "{message}"
        );
    }
}

#[test]
fn taking_over_backs_up_first_then_replaces_in_place() {
    assert_eq!(
        take_over_steps("/etc/cni/net.d/00-multus.conf"),
        vec![
            "backup /etc/cni/net.d/00-multus.conf".to_string(),
            format!("backup {KUBECONFIG}"),
            format!("write {KUBECONFIG}"),
            "write /etc/cni/multus/net.d/team-a-backplane.conflist".to_string(),
            "write /etc/cni/multus/net.d/team-a-storage.conf".to_string(),
            // Replaced by a rename: the node is never without a Multus config.
            "write /etc/cni/net.d/00-multus.conf".to_string(),
        ]
    );
}

#[test]
fn an_upstream_config_under_another_name_goes_only_after_ours_is_written() {
    let steps = take_over_steps("/etc/cni/net.d/00-multus.conflist");
    assert_eq!(steps[0], "backup /etc/cni/net.d/00-multus.conflist");
    let ours = steps
        .iter()
        .position(|s| s == "write /etc/cni/net.d/00-multus.conf")
        .unwrap();
    assert_eq!(
        steps.last().map(String::as_str),
        Some("remove /etc/cni/net.d/00-multus.conflist")
    );
    assert!(ours < steps.len() - 1);
}

#[test]
fn files_the_agent_already_owns_are_never_taken_over_again() {
    let mut owned = OwnedFiles::default();
    owned.files.insert("/etc/cni/net.d/00-multus.conf".into());
    owned.files.insert(KUBECONFIG.into());
    let mut node = after_upstream("/etc/cni/net.d/00-multus.conf");
    node.upstream.clear();
    let plan = plan_apply(&bundle(), &node, &owned, Upstream::TakeOver);
    assert!(
        !paths(&plan.steps).iter().any(|s| s.starts_with("backup")),
        "{:?}",
        plan.steps
    );
}
